import FlashCore
import Foundation
import Histogram
import Synchronization

/// What one request name saw: counts, latencies (an HdrHistogram, in microseconds), sizes.
public struct EndpointStatistics: Sendable {
    public var method: String
    public var name: String
    public var requests = 0
    public var failures = 0
    public var latency = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    public var totalLatencyMicros: UInt64 = 0
    public var contentBytes = 0

    public init(method: String, name: String) {
        self.method = method
        self.name = name
    }

    mutating func record(micros: UInt64, failed: Bool, bytes: Int) {
        requests += 1
        if failed { failures += 1 }
        _ = latency.record(max(1, micros))
        totalLatencyMicros += micros
        contentBytes += bytes
    }

    mutating func merge(_ other: EndpointStatistics) {
        requests += other.requests
        failures += other.failures
        latency.add(other.latency)
        totalLatencyMicros += other.totalLatencyMicros
        contentBytes += other.contentBytes
    }

    /// Milliseconds at a percentile (0…100), as Locust reports them.
    public func percentileMillis(_ percentile: Double) -> Double {
        requests == 0 ? 0 : Double(latency.valueAtPercentile(percentile)) / 1000
    }

    public var averageMillis: Double { requests == 0 ? 0 : Double(totalLatencyMicros) / Double(requests) / 1000 }
    public var minMillis: Double { requests == 0 ? 0 : Double(latency.min) / 1000 }
    public var maxMillis: Double { requests == 0 ? 0 : Double(latency.max) / 1000 }
    public var medianMillis: Double { percentileMillis(50) }
    public var averageContentSize: Double { requests == 0 ? 0 : Double(contentBytes) / Double(requests) }
}

/// One second of the run, for `_stats_history.csv` and the lab's charts.
public struct LoadSample: Sendable {
    public var unixTime: Double
    public var elapsed: Double
    public var users: Int
    public var requestsPerSecond: Double
    public var failuresPerSecond: Double
    /// Latencies of this second only.
    public var window: EndpointStatistics
    /// Everything so far.
    public var total: EndpointStatistics
}

/// The live tally of a load run, shared by every user task.
final class LoadTally: Sendable {
    private struct State {
        var endpoints: [String: EndpointStatistics] = [:]
        var window: EndpointStatistics
        var statusCodes: [Int: Int] = [:]
        var errors: [String: (method: String, name: String, count: Int)] = [:]
        var users = 0
    }

    private let state: Mutex<State>

    init() {
        state = Mutex(State(window: EndpointStatistics(method: "", name: "Aggregated")))
    }

    func record(method: String, name: String, micros: UInt64, status: Int?, error: String?, bytes: Int) {
        let failed = error != nil
        state.withLock { state in
            state.endpoints["\(method) \(name)", default: EndpointStatistics(method: method, name: name)]
                .record(micros: micros, failed: failed, bytes: bytes)
            state.window.record(micros: micros, failed: failed, bytes: bytes)
            if let status { state.statusCodes[status, default: 0] += 1 }
            if let error {
                let key = "\(method)|\(name)|\(error)"
                state.errors[key, default: (method, name, 0)].count += 1
            }
        }
    }

    func setUsers(_ users: Int) { state.withLock { $0.users = users } }

    /// Takes this second's window and resets it.
    func takeWindow() -> (EndpointStatistics, Int) {
        state.withLock { state in
            let window = state.window
            state.window = EndpointStatistics(method: "", name: "Aggregated")
            return (window, state.users)
        }
    }

    var endpoints: [EndpointStatistics] {
        state.withLock { $0.endpoints.values.sorted { ($0.name, $0.method) < ($1.name, $1.method) } }
    }

    var aggregated: EndpointStatistics {
        state.withLock { state in
            var total = EndpointStatistics(method: "", name: "Aggregated")
            for endpoint in state.endpoints.values { total.merge(endpoint) }
            return total
        }
    }

    var statusCodes: [Int: Int] { state.withLock { $0.statusCodes } }

    var errors: [(method: String, name: String, error: String, count: Int)] {
        state.withLock { state in
            state.errors.map { key, value in (value.method, value.name, String(key.split(separator: "|", maxSplits: 2)[2]), value.count) }
                .sorted { $0.count > $1.count }
        }
    }
}
