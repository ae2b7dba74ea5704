import FlashCore
import Foundation
import Logging
import Synchronization

/// Writes each log event as one JSON object per line to standard error:
/// `{"time":"2026-11-21T10:00:00.123Z","level":"info","label":"flashsale","message":"…",…metadata}`,
/// metadata keys at the top level (log shippers index them as fields), nested metadata as JSON.
///
/// Written here because swift-log ships only the plain-text `StreamLogHandler`, and none of the
/// packages in reach (the mirror) has a JSON handler.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let output: @Sendable (String) -> Void

    /// A handler writing to standard error.
    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil) {
        self.init(label: label, metadataProvider: metadataProvider) { line in JSONLogHandler.standardError.write(line) }
    }

    /// A handler writing each line (ending in a newline) to `output`.
    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil, output: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let own = event.metadata { merged.merge(own) { _, new in new } }
        if let error = event.error { merged["error"] = .string("\(error)") }
        var line = "{\"time\":\(JSONText.quoted(Self.timestamp()))"
        line += ",\"level\":\(JSONText.quoted(event.level.rawValue))"
        line += ",\"label\":\(JSONText.quoted(label))"
        line += ",\"message\":\(JSONText.quoted(event.message.description))"
        for key in merged.keys.sorted() where !["time", "level", "label", "message", "source"].contains(key) {
            line += ",\(JSONText.quoted(key)):\(Self.json(merged[key]!))"
        }
        if event.level >= .warning { line += ",\"source\":\(JSONText.quoted("\(event.source):\(event.line)"))" }
        line += "}\n"
        output(line)
    }

    static func json(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case let .string(text): JSONText.quoted(text)
        case let .stringConvertible(convertible): JSONText.quoted(convertible.description)
        case let .array(values): "[" + values.map(json).joined(separator: ",") + "]"
        case let .dictionary(entries): "{" + entries.keys.sorted().map { "\(JSONText.quoted($0)):\(json(entries[$0]!))" }.joined(separator: ",") + "}"
        }
    }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let millis = Int(now.tv_nsec) / 1_000_000
        func pad(_ value: Int32, _ width: Int = 2) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1))-\(pad(parts.tm_mday))T\(pad(parts.tm_hour)):\(pad(parts.tm_min)):\(pad(parts.tm_sec)).\(pad(Int32(millis), 3))Z"
    }

    /// Standard error, one `write` per line so that lines from concurrent tasks never interleave.
    static let standardError = LineWriter(fileDescriptor: 2)
}

/// Writes whole lines to a file descriptor under a lock.
final class LineWriter: Sendable {
    private let fileDescriptor: Int32
    private let lock = Mutex(())

    init(fileDescriptor: Int32) {
        self.fileDescriptor = fileDescriptor
    }

    func write(_ line: String) {
        lock.withLock { _ in
            var bytes = Array(line.utf8)
            var offset = 0
            while offset < bytes.count {
                let written = bytes.withUnsafeMutableBytes { buffer in
                    Foundation.write(fileDescriptor, buffer.baseAddress! + offset, buffer.count - offset)
                }
                if written <= 0 {
                    if written < 0 && errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }
}
