import FlashCore
import Foundation
import Testing

/// `flashsale bench`, run as a user runs it: the real binary starts its own servers, loads them
/// and prints one table. The figures of a debug build mean nothing, so these tests check the
/// run itself: every row is there and measured, ratios are value / ceiling, pass/fail follows
/// the target, every answer was the one the row is about, and bad options are refused.
/// (Run alone by scripts/test: it loads both cores.)
@Suite(.serialized) struct BenchCommandTests {
    /// One run to its end: exit status, standard output, standard error.
    static func bench(_ arguments: [String]) async throws -> (status: Int32, output: String, errors: String) {
        try await ServerProcess.runCommand(["bench"] + arguments)
    }

    struct Row {
        var figure: String
        var value: Double
        var ceiling: Double?
        var ratio: Double?
        var target: String?
        var pass: Bool?
        var note: String?
    }

    static func rows(_ json: JSONValue) -> [Row] {
        (json["rows"]?.array ?? []).map { row in
            func number(_ key: String) -> Double? { if case let .number(value, _)? = row[key] { return value } else { return nil } }
            func text(_ key: String) -> String? { if case let .string(value)? = row[key] { return value } else { return nil } }
            var pass: Bool?
            if case let .bool(value)? = row["pass"] { pass = value }
            return Row(figure: text("figure") ?? "", value: number("value") ?? -1, ceiling: number("ceiling"), ratio: number("ratio"),
                       target: text("target"), pass: pass, note: text("note"))
        }
    }

    /// The checks every run must pass, whatever the machine.
    static func checkTable(_ rows: [Row], expected: [String]) {
        let figures = rows.map(\.figure)
        for figure in expected {
            #expect(figures.contains(figure), "missing row '\(figure)' in \(figures)")
        }
        for row in rows {
            #expect(row.value > 0 && row.value.isFinite, "\(row.figure): \(row.value)")
            // Every answer was the one the figure is about (2xx, or 400 for the refusals).
            #expect(row.note == nil || row.figure.hasPrefix("POST /buy, sales vs Redis"), "\(row.figure): \(row.note ?? "")")
            if let ceiling = row.ceiling {
                #expect(ceiling > 0)
                #expect(abs((row.ratio ?? -1) - row.value / ceiling) < 0.002, "\(row.figure): ratio \(row.ratio ?? -1) ≠ \(row.value) / \(ceiling)")
            }
            if let target = row.target, let pass = row.pass {
                let number = Double(target.filter { $0.isNumber || $0 == "." }) ?? -1
                if target.hasSuffix("×") {
                    #expect(pass == ((row.ratio ?? 0) >= number), "\(row.figure): \(target) vs ratio \(row.ratio ?? -1), pass \(pass)")
                } else if target.hasPrefix("≥") {
                    #expect(pass == (row.value >= number), "\(row.figure): \(target) vs \(row.value), pass \(pass)")
                } else {
                    #expect(pass == (row.value <= number), "\(row.figure): \(target) vs \(row.value), pass \(pass)")
                }
            }
        }
        // The pool's ceiling is W/L itself.
        for row in rows where row.figure.hasPrefix("worker pool, W=") {
            let parts = row.figure.dropFirst("worker pool, W=".count).split(separator: ",")
            let workers = Double(parts[0]) ?? 0
            let latency = Double(parts[1].filter { $0.isNumber }) ?? 0
            #expect(abs((row.ceiling ?? 0) - workers / (latency / 1000)) < 0.01, "\(row.figure): ceiling \(row.ceiling ?? -1)")
        }
    }

    static let httpRows = [
        "ceiling: GET /health, same server", "POST /orders/async (durable)", "POST /orders/async vs /health", "POST /orders/async p99",
        "GET /orders/{id} (pending: with its queue position)", "POST /buy, sales (durable)", "POST /buy, sales vs /health",
        "POST /buy, sales p99", "POST /buy, sold-out storm (refusals, 400)",
    ]
    static let otherRows = [
        "embedded queue: full cycle (send 10, receive 10, delete; 16 loops)", "embedded queue: single sends, 64 concurrent",
        "drain: 20,032 queued orders, 64 workers, instant gateway",
        "worker pool, W=1, L=20ms", "worker pool, W=100, L=50ms", "worker pool, W=1000, L=300ms",
    ]

    @Test func quickRunWithTheOwnGeneratorAndPostgreSQLGivesEveryRowBesideItsCeiling() async throws {
        var arguments = ["--quick", "--json", "--generator", "own", "--seconds", "1", "--peer", "redis-eval=50000"]
        let postgres = ProcessInfo.processInfo.environment["FLASHSALE_TEST_POSTGRES"]
        if let postgres { arguments += ["--database", postgres, "--peer", "pgbench-insert=9000", "--peer", "pgbench-dequeue=4000"] }
        let run = try await Self.bench(arguments)
        #expect(run.status == 0, "\(run.errors)")
        let json = try JSONValue.parse(Array(run.output.utf8))
        guard case let .string(load)? = json["header"]?["load"], case let .number(cores, _)? = json["header"]?["cores"] else {
            Issue.record("no header: \(run.output)")
            return
        }
        #expect(load.hasPrefix("flashsale's own load generator"))
        #expect(cores == Double(ProcessInfo.processInfo.activeProcessorCount))
        var expected = Self.httpRows + Self.otherRows + ["POST /buy, sales vs Redis EVAL decrement-if-positive"]
        if postgres != nil {
            expected += ["PostgreSQL queue: full cycle (16 loops)", "PostgreSQL queue: single sends, 64 concurrent",
                         "PostgreSQL: POST /orders/async (durable)", "PostgreSQL: POST /buy, sales (one hot product)"]
        }
        let rows = Self.rows(json)
        Self.checkTable(rows, expected: expected)
        // The peers given are the ceilings of the rows they are compared with.
        #expect(rows.first { $0.figure == "POST /buy, sales vs Redis EVAL decrement-if-positive" }?.ceiling == 50000)
        if postgres != nil {
            #expect(rows.first { $0.figure == "PostgreSQL queue: full cycle (16 loops)" }?.ceiling == 4000)
            #expect(rows.first { $0.figure == "PostgreSQL queue: single sends, 64 concurrent" }?.ceiling == 9000)
        }
        #expect(run.errors.contains("bench: POST /orders/async") == false, "progress lines are off with --json")
    }

    @Test(.enabled(if: ProcessInfo.processInfo.environment["PATH"]?.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/wrk") } ?? false))
    func quickRunWithWrkPrintsTheTable() async throws {
        let run = try await Self.bench(["--quick", "--seconds", "1"])
        #expect(run.status == 0, "\(run.errors)")
        #expect(run.output.contains("load: wrk ("))
        #expect(run.output.contains("| figure | value | ceiling | ratio | target | result |"))
        for figure in Self.httpRows + Self.otherRows {
            #expect(run.output.contains("| \(figure) |"), "missing \(figure)")
        }
        #expect(run.errors.contains("bench: POST /orders/async"), "progress goes to standard error")
    }

    /// Processes whose command line mentions a bench's scratch folder (its servers and wrk).
    static func benchChildren() -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.filter { $0.allSatisfy(\.isNumber) }.compactMap { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
            let line = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            return line.contains("/flashsale-bench-") && !line.contains(" bench ") ? line : nil
        }
    }

    /// The bench scratch folders in the temporary directory now.
    static func scratchFolders() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory())) ?? [])
            .filter { $0.hasPrefix("flashsale-bench-") && !$0.hasSuffix(".db") && !$0.contains(".db-") }
    }

    @Test func ctrlCStopsTheRunsServersAndRemovesItsFiles() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ServerProcess.binary)
        process.arguments = ["bench", "--quick", "--generator", "own", "--seconds", "5"]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        // Scratch folders already there (an earlier run killed by another signal leaves its own).
        let earlier = Set(Self.scratchFolders())
        try process.run()
        // Wait until the server is up and under load.
        var seen = ""
        while !seen.contains("bench: POST /orders/async"), !process.hasEnded {
            seen += String(decoding: errors.fileHandleForReading.availableData, as: UTF8.self)
        }
        #expect(!Self.benchChildren().isEmpty, "no server running during the load")
        let folders = Self.scratchFolders().filter { !earlier.contains($0) }
        #expect(!folders.isEmpty, "the run's scratch folder was not found")
        kill(process.processIdentifier, SIGINT)
        #expect(await process.waitForEnd(within: .seconds(120)))
        #expect(process.endStatus == 128 + SIGINT)
        #expect(Self.benchChildren().isEmpty, "left running: \(Self.benchChildren())")
        for folder in folders {
            #expect(!FileManager.default.fileExists(atPath: NSTemporaryDirectory() + "/" + folder), "\(folder) left behind")
        }
    }

    @Test func badOptionsAreRefusedBeforeAnythingRuns() async throws {
        for arguments in [["--peer", "mysql=5"], ["--peer", "redis-eval=fast"], ["--generator", "ab"], ["--connections", "0"], ["--seconds", "0.5"]] {
            let run = try await Self.bench(arguments)
            #expect(run.status != 0, "\(arguments) was accepted")
            #expect(run.errors.contains("Error:"), "\(arguments): \(run.errors)")
            #expect(run.output.isEmpty, "\(arguments) printed a table")
        }
    }

    @Test(.enabled(if: TestPostgresServer.url != nil))
    func theOverloadBenchOffersMultiplesOfTheMeasuredCapacityAndCountsEveryAnswer() async throws {
        let url = try #require(TestPostgresServer.url)
        let (status, output, errors) = try await Self.bench([
            "overload", "--database", url, "--seconds", "2", "--multiples", "3", "--link-delay", "100ms",
            "--admission-deadline", "3s", "--clients", "256", "--json",
        ])
        // Pass or fail is the machine's speed; the run itself must end and print its table.
        #expect(status == 0 || status == 1, "exit \(status): \(errors)")
        let json = try JSONValue.parse(Array(output.utf8))
        let rows = Self.rows(json)
        let figures = rows.map(\.figure)
        let capacity = try #require(rows.first { $0.figure.hasPrefix("accept capacity, PostgreSQL 100ms away") }, "\(figures)")
        #expect(capacity.value > 0)
        for multiple in ["1×", "3×"] {
            for figure in ["offered (open loop)", "goodput (202 per second)", "accepted p99", "server RSS, peak"] {
                #expect(figures.contains("\(multiple) capacity: \(figure)"), "missing \(multiple) \(figure) in \(figures)")
            }
        }
        #expect(figures.contains("3× capacity: refused (503 overloaded) p99, at the server"))
        // The open loop aims at the multiple of the capacity measured first.
        let offered = try #require(rows.first { $0.figure == "3× capacity: offered (open loop)" })
        #expect(abs((offered.ceiling ?? 0) - 3 * capacity.value) <= 3 * capacity.value * 0.01, "intended \(offered.ceiling ?? -1) for capacity \(capacity.value)")
        // Every request sent was answered and counted: accepted, refused or something else named.
        for row in rows where row.figure.hasSuffix("offered (open loop)") {
            let note = try #require(row.note)
            // "N sent: A accepted (202), R refused (503 overloaded), O other (…)"
            let counts = note.split(separator: ";")[0].split(separator: "(")
                .prefix(3).joined(separator: "(").split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
            #expect(counts.count >= 6, "\(note)")
            guard counts.count >= 6 else { continue }
            let (sent, accepted, refused, other) = (counts[0], counts[1], counts[3], counts[5])
            #expect(sent > 0 && accepted + refused + other == sent, "\(note)")
        }
    }
}
