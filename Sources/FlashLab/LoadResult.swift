import FlashCore
import Foundation

/// What a load run measured, and its reports: Locust's console summary, Locust's CSV files, JSON.
public struct LoadResult: Sendable {
    public var configuration: LoadConfiguration
    /// Seconds the run took.
    public var elapsed: Double
    public var endpoints: [EndpointStatistics]
    public var aggregated: EndpointStatistics
    public var statusCodes: [Int: Int]
    public var errors: [(method: String, name: String, error: String, count: Int)]
    public var history: [LoadSample]

    /// Locust's percentiles.
    public static let percentiles: [(label: String, value: Double)] = [
        ("50%", 50), ("66%", 66), ("75%", 75), ("80%", 80), ("90%", 90), ("95%", 95),
        ("98%", 98), ("99%", 99), ("99.9%", 99.9), ("99.99%", 99.99), ("100%", 100),
    ]

    public var requestsPerSecond: Double { Double(aggregated.requests) / max(elapsed, 1e-9) }
    public var failuresPerSecond: Double { Double(aggregated.failures) / max(elapsed, 1e-9) }

    // MARK: Console

    /// The summary in Locust's layout, with status codes and the error report.
    public var summary: String {
        let nameWidth = max(40, (endpoints.map { $0.name.count }.max() ?? 0) + 2)
        func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
            text.count >= width ? text : (left ? text + String(repeating: " ", count: width - text.count)
                                                : String(repeating: " ", count: width - text.count) + text)
        }
        func ms(_ value: Double) -> String { String(Int(value.rounded())) }
        func row(_ type: String, _ stats: EndpointStatistics) -> String {
            let failRatio = stats.requests == 0 ? 0 : Double(stats.failures) / Double(stats.requests) * 100
            let rps = Double(stats.requests) / max(elapsed, 1e-9), fps = Double(stats.failures) / max(elapsed, 1e-9)
            return pad(type, 9, left: true) + pad(stats.name, nameWidth, left: true) + pad(String(stats.requests), 7) + " "
                + pad("\(stats.failures)(\(String(format: "%.2f", failRatio))%)", 12) + " | "
                + pad(ms(stats.averageMillis), 6) + " " + pad(ms(stats.minMillis), 7) + " " + pad(ms(stats.maxMillis), 7) + " "
                + pad(ms(stats.medianMillis), 6) + " | " + pad(String(format: "%.2f", rps), 7) + " " + pad(String(format: "%.2f", fps), 11)
        }
        let rule = String(repeating: "-", count: 9 + nameWidth + 7 + 1 + 12 + 3 + 29 + 3 + 19)
        var lines: [String] = []
        lines.append(pad("Type", 9, left: true) + pad("Name", nameWidth, left: true) + pad("# reqs", 7) + " " + pad("# fails", 12)
                     + " | " + pad("Avg", 6) + " " + pad("Min", 7) + " " + pad("Max", 7) + " " + pad("Med", 6) + " | "
                     + pad("req/s", 7) + " " + pad("failures/s", 11))
        lines.append(rule)
        for endpoint in endpoints { lines.append(row(endpoint.method, endpoint)) }
        lines.append(rule)
        lines.append(row("", aggregated))
        lines.append("")
        lines.append("Response time percentiles (approximated)")
        var header = pad("Type", 9, left: true) + pad("Name", nameWidth, left: true)
        for (label, _) in Self.percentiles { header += pad(label, 7) }
        lines.append(header + pad("# reqs", 8))
        let percentileRule = String(repeating: "-", count: 9 + nameWidth + 7 * Self.percentiles.count + 8)
        lines.append(percentileRule)
        func percentileRow(_ type: String, _ stats: EndpointStatistics) -> String {
            var text = pad(type, 9, left: true) + pad(stats.name, nameWidth, left: true)
            for (_, value) in Self.percentiles { text += pad(ms(stats.percentileMillis(value)), 7) }
            return text + pad(String(stats.requests), 8)
        }
        for endpoint in endpoints { lines.append(percentileRow(endpoint.method, endpoint)) }
        lines.append(percentileRule)
        lines.append(percentileRow("", aggregated))
        lines.append("")
        lines.append("Status codes: " + (statusCodes.isEmpty ? "none" : statusCodes.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")))
        if !errors.isEmpty {
            lines.append("")
            lines.append("Error report")
            lines.append(pad("# occurrences", 14) + "      Error")
            lines.append(String(repeating: "-", count: 80))
            for error in errors { lines.append(pad(String(error.count), 14) + "      \(error.method) \(error.name): \(error.error)") }
        }
        return lines.joined(separator: "\n")
    }

    // MARK: CSV (Locust's headers, so existing tooling reads them)

    public static let statsHeader = "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
    public static let historyHeader = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,Total Average Content Size"
    public static let failuresHeader = "Method,Name,Error,Occurrences"

    static func csvField(_ text: String) -> String {
        text.contains(",") || text.contains("\"") || text.contains("\n") ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
    }

    func percentileFields(_ stats: EndpointStatistics) -> String {
        Self.percentiles.map { stats.requests == 0 ? "N/A" : String(Int(stats.percentileMillis($0.value).rounded())) }.joined(separator: ",")
    }

    /// `PREFIX_stats.csv`.
    public var statsCSV: String {
        func row(_ type: String, _ stats: EndpointStatistics) -> String {
            [type, Self.csvField(stats.name), String(stats.requests), String(stats.failures),
             String(Int(stats.medianMillis.rounded())), String(format: "%.3f", stats.averageMillis),
             String(format: "%.3f", stats.minMillis), String(format: "%.3f", stats.maxMillis),
             String(format: "%.1f", stats.averageContentSize),
             String(format: "%.6f", Double(stats.requests) / max(elapsed, 1e-9)),
             String(format: "%.6f", Double(stats.failures) / max(elapsed, 1e-9)), percentileFields(stats)].joined(separator: ",")
        }
        return ([Self.statsHeader] + endpoints.map { row($0.method, $0) } + [row("", aggregated)]).joined(separator: "\n") + "\n"
    }

    /// `PREFIX_stats_history.csv`: one row a second.
    public var historyCSV: String {
        let name = endpoints.count == 1 ? endpoints[0].name : "Aggregated"
        let rows = history.map { sample in
            [String(Int(sample.unixTime)), String(sample.users), endpoints.count == 1 ? endpoints[0].method : "", Self.csvField(name),
             String(format: "%.6f", sample.requestsPerSecond), String(format: "%.6f", sample.failuresPerSecond),
             percentileFields(sample.window), String(sample.total.requests), String(sample.total.failures),
             String(Int(sample.total.medianMillis.rounded())), String(format: "%.3f", sample.total.averageMillis),
             String(format: "%.3f", sample.total.minMillis), String(format: "%.3f", sample.total.maxMillis),
             String(format: "%.1f", sample.total.averageContentSize)].joined(separator: ",")
        }
        return ([Self.historyHeader] + rows).joined(separator: "\n") + "\n"
    }

    /// `PREFIX_failures.csv`.
    public var failuresCSV: String {
        ([Self.failuresHeader] + errors.map { [ $0.method, Self.csvField($0.name), Self.csvField($0.error), String($0.count)].joined(separator: ",") })
            .joined(separator: "\n") + "\n"
    }

    /// Writes the three CSV files; returns their paths.
    @discardableResult
    public func writeCSV(prefix: String) throws -> [String] {
        let files = [("_stats.csv", statsCSV), ("_stats_history.csv", historyCSV), ("_failures.csv", failuresCSV)]
        return try files.map { suffix, text in
            let path = prefix + suffix
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
    }

    // MARK: JSON

    public var json: String {
        func n(_ v: Double) -> String { v.isFinite ? String(format: "%.3f", v) : "null" }
        let latency = ["\"avg\":\(n(aggregated.averageMillis))", "\"min\":\(n(aggregated.minMillis))", "\"max\":\(n(aggregated.maxMillis))"]
            + Self.percentiles.map { "\"p\($0.label.dropLast())\":\(n(aggregated.percentileMillis($0.value)))" }
        let codes = statusCodes.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",")
        let errorList = errors.map { #"{"method":"\#($0.method)","name":\#(JSONText.quoted($0.name)),"error":\#(JSONText.quoted($0.error)),"occurrences":\#($0.count)}"# }
        return #"{"requests":\#(aggregated.requests),"failures":\#(aggregated.failures),"elapsed_seconds":\#(n(elapsed)),"requests_per_second":\#(n(requestsPerSecond)),"failures_per_second":\#(n(failuresPerSecond)),"latency_ms":{\#(latency.joined(separator: ","))},"status_codes":{\#(codes)},"errors":[\#(errorList.joined(separator: ","))]}"#
    }
}
