import FlashCore
import FlashTelemetry
import Logging
import Synchronization
import Testing

@Suite("JSON log lines")
struct JSONLogHandlerTests {
    final class Lines: Sendable {
        let lines = Mutex<[String]>([])
        func add(_ line: String) { lines.withLock { $0.append(line) } }
        var all: [String] { lines.withLock { $0 } }
    }

    @Test func eachEventIsOneParseableLineWithItsMetadataAtTheTop() throws {
        let lines = Lines()
        var logger = Logger(label: "flashsale") { label in
            var handler = JSONLogHandler(label: label) { lines.add($0) }
            handler.logLevel = .debug
            return handler
        }
        logger[metadataKey: "order_id"] = "o-1"
        logger.info("line one\nwith \"quotes\", a tab\t, a bell \u{07} and ünïcode", metadata: ["nested": ["a": "1", "b": ["x", "y"]]])
        logger.trace("below the level: not written")
        logger.warning("careful", metadata: ["order_id": "o-2"])
        #expect(lines.all.count == 2)
        for line in lines.all {
            #expect(line.hasSuffix("}\n"))
            #expect(line.dropLast().contains("\n") == false, "one event, one line")
        }
        let first = try JSONValue.parse(Array(lines.all[0].utf8))
        #expect(first["message"]?.string == "line one\nwith \"quotes\", a tab\t, a bell \u{07} and ünïcode")
        #expect(first["level"]?.string == "info")
        #expect(first["label"]?.string == "flashsale")
        #expect(first["order_id"]?.string == "o-1")
        #expect(first["nested"]?["a"]?.string == "1")
        #expect(first["time"]?.string?.hasSuffix("Z") == true)
        let second = try JSONValue.parse(Array(lines.all[1].utf8))
        #expect(second["order_id"]?.string == "o-2", "an event's own metadata wins")
        #expect(second["source"]?.string != nil, "warnings say where they come from")
    }
}
