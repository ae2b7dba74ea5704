import FlashWorkers
import Foundation

/// An arrival pattern for `flashsale plan --simulate --workers auto`, and the report of the
/// elastic pool's run on it (``PoolSimulation`` with the real ``WorkerScaler``).
public struct ScalingScenario: Sendable {
    /// The pattern's name, as given.
    public var name: String
    public var arrivals: PoolSimulation.Arrivals
    /// Seconds of arrivals.
    public var duration: Double

    /// A named pattern at `demand` orders per second over `duration` seconds:
    /// - `sale`: the seeds' flash sale, 0 → demand for the whole duration → 0;
    /// - `step`: 0 for the first quarter, then the demand to the end;
    /// - `spike`: a tenth of the demand, with the whole demand for a twelfth of the time at the third;
    /// - anything else is a file: a recorded trace (see ``trace(path:)``).
    public static func named(_ name: String, demand: Double, duration: Double) throws -> ScalingScenario {
        switch name {
        case "sale":
            return ScalingScenario(name: name, arrivals: .rate { $0 < duration ? demand : 0 }, duration: duration)
        case "step":
            return ScalingScenario(name: name, arrivals: .rate { $0 < duration / 4 ? 0 : demand }, duration: duration)
        case "spike":
            let start = duration / 3, end = duration / 3 + duration / 12
            return ScalingScenario(name: name, arrivals: .rate { (start..<end).contains($0) ? demand : demand / 10 }, duration: duration)
        default:
            return try trace(path: name)
        }
    }

    /// A recorded arrival trace: `flashsale load --csv`'s (or Locust's) `…_stats_history.csv`
    /// (its `Timestamp` and `Requests/s` columns: the rate second by second), or a file of
    /// arrival timestamps, one per line (seconds; the first column of a CSV; a header is skipped).
    public static func trace(path: String) throws -> ScalingScenario {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ScenarioError("no scenario or readable trace file '\(path)': use sale, step, spike or a CSV file")
        }
        var lines = text.split(whereSeparator: \.isNewline).map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        guard let header = lines.first else { throw ScenarioError("the trace '\(path)' is empty") }
        if let rateColumn = header.firstIndex(of: "Requests/s"), let timeColumn = header.firstIndex(of: "Timestamp") {
            // One row a second (the aggregated row of each second, "Aggregated" or the only one).
            var rates: [(Double, Double)] = []
            for row in lines.dropFirst() where row.count > max(rateColumn, timeColumn) {
                guard let time = Double(row[timeColumn]), let rate = Double(row[rateColumn]) else { continue }
                if let last = rates.last, last.0 == time { rates[rates.count - 1].1 = max(last.1, rate) } else { rates.append((time, rate)) }
            }
            guard let first = rates.first else { throw ScenarioError("the trace '\(path)' has no Requests/s rows") }
            let perSecond = rates.map { ($0.0 - first.0, $0.1) }
            let duration = (perSecond.last?.0 ?? 0) + 1
            return ScalingScenario(name: path, arrivals: .rate { time in
                // The row covering this second.
                var low = 0, high = perSecond.count - 1
                while low < high {
                    let mid = (low + high + 1) / 2
                    if perSecond[mid].0 <= time { low = mid } else { high = mid - 1 }
                }
                return perSecond[low].1
            }, duration: duration)
        }
        if Double(header.first ?? "") == nil { lines.removeFirst() }
        let instants = lines.compactMap { $0.first.flatMap { Double($0.trimmingCharacters(in: .whitespaces)) } }.sorted()
        guard let first = instants.first else { throw ScenarioError("the trace '\(path)' has no timestamps") }
        let relative = instants.map { $0 - first }
        return ScalingScenario(name: path, arrivals: .instants(relative), duration: (relative.last ?? 0) + 1)
    }
}

/// A scenario that cannot be read.
public struct ScenarioError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// The elastic pool's run, as text, CSV and charts.
public struct ScalingReport: Sendable {
    public var scenario: String
    public var result: PoolSimulation.Result
    public var serviceTime: Double
    public var targetWait: Double

    public init(scenario: String, result: PoolSimulation.Result, serviceTime: Double, targetWait: Double) {
        self.scenario = scenario
        self.result = result
        self.serviceTime = serviceTime
        self.targetWait = targetWait
    }

    /// The samples thinned to about `rows` rows, then the totals.
    public func text(rows: Int = 24) -> String {
        let samples = result.samples
        let stride = max(1, samples.count / max(1, rows))
        var out = "time        workers     busy    waiting   oldest age   arrivals/s\n"
        for (index, sample) in samples.enumerated() where index % stride == 0 || index == samples.count - 1 {
            out += [Format.seconds(sample.time).padding(10), Format.number(Double(sample.workers)).padding(9, left: true),
                    Format.number(Double(sample.busy)).padding(9, left: true), Format.number(Double(sample.waiting)).padding(10, left: true),
                    Format.seconds(sample.oldestAgeSeconds).padding(12, left: true),
                    Format.number(sample.arrivalRate).padding(12, left: true)].joined(separator: " ") + "\n"
        }
        let end = samples.last?.time ?? 0
        out += "\n\(Format.number(Double(result.arrived))) orders, \(Format.number(Double(result.completed))) completed by \(Format.seconds(end))"
        out += "; peak workers \(Format.number(Double(result.peakWorkers)))"
        out += "; oldest message at most \(Format.seconds(result.peakAgeSeconds)) old (target wait \(Format.seconds(targetWait)) + service \(Format.seconds(serviceTime)))"
        out += "; \(Format.number(result.workerSeconds)) worker-seconds"
        if result.refused > 0 { out += "; \(Format.number(Double(result.refused))) charges refused by the gateway" }
        return out + "\n"
    }

    /// `time,workers,busy,waiting,oldest_age_seconds,arrivals_per_second,completed`.
    public var csv: String {
        "time,workers,busy,waiting,oldest_age_seconds,arrivals_per_second,completed\n" + result.samples.map {
            "\($0.time),\($0.workers),\($0.busy),\($0.waiting),\($0.oldestAgeSeconds),\($0.arrivalRate),\($0.completed)"
        }.joined(separator: "\n") + "\n"
    }

    /// Workers and waiting orders over time, and the oldest message's age beside the target.
    public var charts: (workers: String, age: String) {
        let samples = thinned(1_000)
        let workers = SVGChart(title: "Elastic workers: \(scenario)", xLabel: "seconds", yLabel: "count").lines([
            .init(name: "workers", points: samples.map { ($0.time, Double($0.workers)) }),
            .init(name: "busy", points: samples.map { ($0.time, Double($0.busy)) }, dashed: true),
            .init(name: "waiting", points: samples.map { ($0.time, Double($0.waiting)) }),
        ])
        let age = SVGChart(title: "Oldest message's age: \(scenario)", xLabel: "seconds", yLabel: "seconds").lines([
            .init(name: "oldest age", points: samples.map { ($0.time, $0.oldestAgeSeconds) }),
            .init(name: "target wait + service", points: samples.map { ($0.time, targetWait + serviceTime) }, dashed: true),
        ])
        return (workers, age)
    }

    private func thinned(_ count: Int) -> [PoolSimulation.Sample] {
        let stride = max(1, result.samples.count / count)
        return result.samples.enumerated().filter { $0.offset % stride == 0 }.map(\.element)
    }
}

extension String {
    fileprivate func padding(_ width: Int, left: Bool = false) -> String {
        count >= width ? self : (left ? String(repeating: " ", count: width - count) + self : self + String(repeating: " ", count: width - count))
    }
}
