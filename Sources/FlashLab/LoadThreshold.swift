import FlashCore
import Foundation

/// A pass/fail criterion of a load run, as k6's thresholds: `p99<50ms`, `avg<=200ms`,
/// `max<2s`, `errors<1%`, `rps>=500`. A run that misses one fails (`flashsale load` exits 1),
/// so a release pipeline can gate on it.
public struct LoadThreshold: Sendable, Equatable, CustomStringConvertible {
    /// What is measured over the whole run (every endpoint together).
    public enum Metric: Sendable, Equatable {
        /// A latency percentile, in milliseconds.
        case percentile(Double)
        case average, maximum
        /// Failed requests ÷ requests (a fraction).
        case errors
        /// Requests per second.
        case rate
    }

    public enum Comparison: String, Sendable, Equatable, CaseIterable {
        case lessOrEqual = "<=", greaterOrEqual = ">=", less = "<", greater = ">"
    }

    public let metric: Metric
    public let comparison: Comparison
    /// Milliseconds for latencies, a fraction for errors, per second for the rate.
    public let limit: Double
    /// As the user wrote it.
    public let description: String

    /// Parses `METRIC OP VALUE`: METRIC is p50, p99, p99.9 (any percentile), avg, max, errors
    /// or rps; OP is <, <=, > or >=; a latency takes a duration with its unit (50ms, 1.5s), errors
    /// a percentage (1%) or a fraction (0.01), rps a number.
    public init(parsing text: String) throws(TemplateError) {
        let compact = text.replacingOccurrences(of: " ", with: "")
        guard let comparison = Comparison.allCases.first(where: { compact.contains($0.rawValue) }),
              let range = compact.range(of: comparison.rawValue) else {
            throw TemplateError("--threshold must be like p99<50ms, avg<200ms, errors<1% or rps>100, not '\(text)'")
        }
        let name = compact[..<range.lowerBound].lowercased()
        let value = String(compact[range.upperBound...])
        let metric: Metric
        let limit: Double
        switch name {
        case "avg", "average", "max", "maximum", "med", "median":
            metric = name.hasPrefix("av") ? .average : name.hasPrefix("max") ? .maximum : .percentile(50)
            limit = try Self.milliseconds(value, text)
        case "errors", "error_rate", "failures":
            if value.hasSuffix("%"), let percent = Double(value.dropLast()), (0...100).contains(percent) {
                limit = percent / 100
            } else if let fraction = Double(value), (0...1).contains(fraction) {
                limit = fraction
            } else {
                throw TemplateError("--threshold '\(text)': errors take a percentage such as 1% (or a fraction such as 0.01)")
            }
            metric = .errors
        case "rps", "rate":
            guard let number = RateParsing.perSecond(value.contains("/") ? value : value + "/s"), number >= 0 else {
                throw TemplateError("--threshold '\(text)': rps takes requests per second such as 500")
            }
            metric = .rate
            limit = number
        default:
            guard name.hasPrefix("p"), let percentile = Double(name.dropFirst()), percentile > 0, percentile <= 100 else {
                throw TemplateError("--threshold '\(text)': the metric must be p50, p95, p99 (any percentile), avg, max, errors or rps, not '\(name)'")
            }
            metric = .percentile(percentile)
            limit = try Self.milliseconds(value, text)
        }
        self.metric = metric
        self.comparison = comparison
        self.limit = limit
        self.description = text
    }

    private static func milliseconds(_ value: String, _ text: String) throws(TemplateError) -> Double {
        guard let duration = Duration(parsing: value) else {
            throw TemplateError("--threshold '\(text)': a latency takes a duration with its unit, such as 50ms or 1.5s")
        }
        return duration.asSeconds * 1000
    }

    /// The run's value of the metric (milliseconds, fraction or per second).
    public func measured(in result: LoadResult) -> Double {
        let stats = result.aggregated
        switch metric {
        case let .percentile(p): return stats.percentileMillis(p)
        case .average: return stats.averageMillis
        case .maximum: return stats.maxMillis
        case .errors: return stats.requests == 0 ? 1 : Double(stats.failures) / Double(stats.requests)
        case .rate: return result.requestsPerSecond
        }
    }

    /// Whether the run meets it. A run without a single request meets no latency threshold.
    public func isMet(by result: LoadResult) -> Bool {
        if result.aggregated.requests == 0, metric != .rate { return false }
        let value = measured(in: result)
        switch comparison {
        case .less: return value < limit
        case .lessOrEqual: return value <= limit
        case .greater: return value > limit
        case .greaterOrEqual: return value >= limit
        }
    }

    /// The measured value as the threshold writes it: `41.2ms`, `0.35%`, `512.3/s`.
    public func formatted(_ value: Double) -> String {
        switch metric {
        case .percentile, .average, .maximum: return String(format: "%.1fms", value)
        case .errors: return String(format: "%.2f%%", value * 100)
        case .rate: return String(format: "%.1f/s", value)
        }
    }

    /// One line per threshold: `✓ p99<50ms (41.2ms)` or `✗ errors<1% (3.10%)`.
    public static func report(_ thresholds: [LoadThreshold], for result: LoadResult) -> String {
        thresholds.map { threshold in
            let mark = threshold.isMet(by: result) ? "✓ passed" : "✗ FAILED"
            return "  \(mark)  \(threshold.description)  (measured \(threshold.formatted(threshold.measured(in: result))))"
        }.joined(separator: "\n")
    }
}
