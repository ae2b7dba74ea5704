import AsyncHTTPClient
import FlashBackend
import FlashCore
import Foundation
import NIOCore


/// One reading of a server's `GET /stats` (the shared ``SystemStats`` type), with when it was taken.
public struct StatsSample: Sendable {
    public var elapsed: Double
    public var unixTime: Double
    public var stats: SystemStats

    public init(stats: SystemStats, elapsed: Double, unixTime: Double) {
        self.stats = stats
        self.elapsed = elapsed
        self.unixTime = unixTime
    }

    public var visible: Int { stats.queue.visible }
    public var inFlight: Int { stats.queue.inFlight }
    public var delayed: Int { stats.queue.delayed }
    public var deadLetter: Int { stats.queue.deadLetter }
    public var pending: Int { stats.orders.pending }
    public var processing: Int { stats.orders.processing }
    public var completed: Int { stats.orders.completed }
    public var failed: Int { stats.orders.failed }
    public var total: Int { stats.orders.total }
    public var workers: Int { stats.workers.count }
    public var busy: Int { stats.workers.busy }
    public var acceptedPerSecond: Double { stats.rates.acceptedPerSecond }
    public var processedPerSecond: Double { stats.rates.processedPerSecond }
    public var charges: Int { stats.payments.charges }

    /// Orders waiting in the queue: visible + in flight + delayed (what the seeds' CloudWatch showed).
    public var queueDepth: Int { visible + inFlight + delayed }

    public static let csvHeader = "timestamp,elapsed_seconds,visible,in_flight,delayed,dead_letter,pending,processing,completed,failed,total,workers,busy,accepted_per_second,processed_per_second"

    public var csvRow: String {
        "\(Int(unixTime)),\(String(format: "%.2f", elapsed)),\(visible),\(inFlight),\(delayed),\(deadLetter),\(pending),\(processing),\(completed),\(failed),\(total),\(workers),\(busy),\(String(format: "%.2f", acceptedPerSecond)),\(String(format: "%.2f", processedPerSecond))"
    }
}

/// Samples a server's `GET /stats` at an interval: the seeds' monitor_queue.sh, without AWS.
public struct StatsMonitor: Sendable {
    public let url: String
    public let interval: Double

    public init(url: String, interval: Double) {
        self.url = url.hasSuffix("/") ? String(url.dropLast()) : url
        self.interval = interval
    }

    /// One reading now.
    public static func read(_ http: HTTPClient, url: String, elapsed: Double) async throws -> StatsSample {
        let response = try await http.execute(HTTPClientRequest(url: url + "/stats"), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .ok, let stats = try? JSONDecoder().decode(SystemStats.self, from: Data(body.readableBytesView)) else {
            throw MonitorError("\(url)/stats did not answer with flashsale statistics (HTTP \(response.status.code))")
        }
        return StatsSample(stats: stats, elapsed: elapsed, unixTime: Date().timeIntervalSince1970)
    }

    /// Samples until `until` returns true (checked after each sample) or the task is cancelled.
    public func run(http: HTTPClient, until: @Sendable (StatsSample) -> Bool = { _ in false },
                    onSample: @Sendable (StatsSample) -> Void) async throws {
        let clock = ContinuousClock()
        let start = clock.now
        var tick = 0
        while !Task.isCancelled {
            let sample = try await Self.read(http, url: url, elapsed: (clock.now - start).asSeconds)
            onSample(sample)
            if until(sample) { return }
            tick += 1
            try await Task.sleep(until: start + .milliseconds(Int64(Double(tick) * interval * 1000)), clock: .continuous)
        }
    }
}

public struct MonitorError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
