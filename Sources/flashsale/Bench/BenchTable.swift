import Foundation

/// One line of `flashsale bench`'s table: a figure, and what it is judged against.
struct BenchRow: Sendable {
    /// What a row is held to.
    enum Target: Sendable {
        /// value / ceiling ≥ the number.
        case ratioAtLeast(Double)
        /// value ≥ the number (in the row's unit).
        case atLeast(Double)
        /// value ≤ the number (in the row's unit).
        case atMost(Double)
        /// value / ceiling ≤ the number.
        case ratioAtMost(Double)
    }

    var figure: String
    var value: Double
    var unit: String
    /// The figure it is shown beside, measured in the same run: its name and value.
    var ceiling: (name: String, value: Double)?
    var target: Target?
    /// A remark printed under the table (how it was measured, what fell short and why).
    var note: String?

    var ratio: Double? {
        guard let ceiling, ceiling.value > 0 else { return nil }
        return value / ceiling.value
    }

    /// nil when the row has no target, or its target is a ratio and the ceiling is missing.
    var passed: Bool? {
        switch target {
        case nil: return nil
        case let .ratioAtLeast(minimum): return ratio.map { $0 >= minimum }
        case let .atLeast(minimum): return value >= minimum
        case let .atMost(maximum): return value <= maximum
        case let .ratioAtMost(maximum): return ratio.map { $0 <= maximum }
        }
    }

    var targetText: String {
        switch target {
        case nil: return ""
        case let .ratioAtLeast(minimum): return "≥ \(BenchTable.number(minimum))×"
        case let .atLeast(minimum): return "≥ \(BenchTable.number(minimum)) \(unit)"
        case let .atMost(maximum): return "≤ \(BenchTable.number(maximum)) \(unit)"
        case let .ratioAtMost(maximum): return "≤ \(BenchTable.number(maximum))×"
        }
    }
}

/// The rows of a run, printed as one table (or one JSON object), with the machine and the load
/// tool named, so a figure is never read without the ceilings it was measured beside.
struct BenchTable: Sendable {
    var rows: [BenchRow] = []
    var notes: [String] = []

    mutating func add(_ row: BenchRow) { rows.append(row) }

    /// True when no row with a target missed it.
    var allPassed: Bool { !rows.contains { $0.passed == false } }

    /// The Markdown table (it reads well in a terminal and pastes into BENCHMARKS.md as it is).
    func markdown(header: BenchHeader) -> String {
        var lines = [
            "flashsale bench — \(header.date), \(header.cpu), \(header.cores) cores, \(header.build) build",
            "load: \(header.load); \(header.connections) connections, \(BenchTable.number(header.seconds)) s per HTTP figure",
            "",
            "| figure | value | ceiling | ratio | target | result |",
            "|---|---:|---|---:|---|---|",
        ]
        for row in rows {
            let value = "\(BenchTable.number(row.value)) \(row.unit)"
            let ceiling = row.ceiling.map { "\($0.name): \(BenchTable.number($0.value))" } ?? ""
            let ratio = row.ratio.map { String(format: "%.2f", $0) } ?? ""
            let result: String
            switch row.passed {
            case true?: result = "pass"
            case false?: result = "**FAIL**"
            case nil: result = row.target == nil ? "" : "n/a"
            }
            lines.append("| \(row.figure) | \(value) | \(ceiling) | \(ratio) | \(row.targetText) | \(result) |")
        }
        let remarks = rows.compactMap { row in row.note.map { "- \(row.figure): \($0)" } } + notes.map { "- \($0)" }
        if !remarks.isEmpty { lines += [""] + remarks }
        return lines.joined(separator: "\n")
    }

    /// The same as one JSON object.
    func json(header: BenchHeader) throws -> String {
        struct Row: Encodable {
            var figure: String
            var value: Double
            var unit: String
            var ceilingName: String?
            var ceiling: Double?
            var ratio: Double?
            var target: String?
            var pass: Bool?
            var note: String?
            enum CodingKeys: String, CodingKey {
                case figure, value, unit, ceilingName = "ceiling_name", ceiling, ratio, target, pass, note
            }
        }
        struct Document: Encodable {
            var header: BenchHeader
            var rows: [Row]
            var notes: [String]
            var allPassed: Bool
            enum CodingKeys: String, CodingKey { case header, rows, notes, allPassed = "all_passed" }
        }
        let document = Document(header: header, rows: rows.map { row in
            Row(figure: row.figure, value: (row.value * 1000).rounded() / 1000, unit: row.unit, ceilingName: row.ceiling?.name,
                ceiling: row.ceiling.map { ($0.value * 1000).rounded() / 1000 }, ratio: row.ratio.map { ($0 * 1000).rounded() / 1000 },
                target: row.target == nil ? nil : row.targetText, pass: row.passed, note: row.note)
        }, notes: notes, allPassed: allPassed)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(document), as: UTF8.self)
    }

    /// 123,456 for large figures, 4.20 for small ones.
    static func number(_ value: Double) -> String {
        if value.magnitude >= 100 {
            let formatter = NumberFormatter()
            formatter.numberStyle = .decimal
            formatter.maximumFractionDigits = 0
            formatter.locale = Locale(identifier: "en_US")
            return formatter.string(from: NSNumber(value: value.rounded())) ?? String(Int(value.rounded()))
        }
        if value == value.rounded() { return String(Int(value)) }
        return String(format: value.magnitude >= 10 ? "%.1f" : "%.2f", value)
    }
}

/// Where and how a run was measured.
struct BenchHeader: Encodable, Sendable {
    var date: String
    var cpu: String
    var cores: Int
    var build: String
    var load: String
    var connections: Int
    var seconds: Double

    /// This machine, now.
    static func current(load: String, connections: Int, seconds: Double) -> BenchHeader {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        #if DEBUG
        let build = "debug (figures are not representative: use `swift run -c release flashsale bench`)"
        #else
        let build = "release"
        #endif
        return BenchHeader(date: formatter.string(from: Date()), cpu: cpuModel(), cores: ProcessInfo.processInfo.activeProcessorCount,
                           build: build, load: load, connections: connections, seconds: seconds)
    }

    /// The CPU's model name from /proc/cpuinfo ("unknown CPU" elsewhere).
    static func cpuModel() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") {
                return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return "unknown CPU"
    }
}
