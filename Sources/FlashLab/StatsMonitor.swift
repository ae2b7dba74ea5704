import AsyncHTTPClient
import FlashCore
import Foundation
import NIOCore

/// One reading of a server's `GET /stats`.
public struct StatsSample: Sendable {
    public var elapsed: Double
    public var unixTime: Double
    public var visible: Int
    public var inFlight: Int
    public var delayed: Int
    public var deadLetter: Int
    public var pending: Int
    public var processing: Int
    public var completed: Int
    public var failed: Int
    public var total: Int
    public var workers: Int
    public var busy: Int
    public var acceptedPerSecond: Double
    public var processedPerSecond: Double
    public var charges: Int

    /// Orders waiting in the queue: visible + in flight + delayed (what the seeds' CloudWatch showed).
    public var queueDepth: Int { visible + inFlight + delayed }

    public static let csvHeader = "timestamp,elapsed_seconds,visible,in_flight,delayed,dead_letter,pending,processing,completed,failed,total,workers,busy,accepted_per_second,processed_per_second"

    public var csvRow: String {
        "\(Int(unixTime)),\(String(format: "%.2f", elapsed)),\(visible),\(inFlight),\(delayed),\(deadLetter),\(pending),\(processing),\(completed),\(failed),\(total),\(workers),\(busy),\(String(format: "%.2f", acceptedPerSecond)),\(String(format: "%.2f", processedPerSecond))"
    }

    /// Parses a `/stats` reply.
    public init?(json: JSONValue, elapsed: Double, unixTime: Double) {
        func int(_ a: String, _ b: String) -> Int? { json.at([a, b])?.int }
        func double(_ a: String, _ b: String) -> Double { json.at([a, b])?.double ?? 0 }
        guard let visible = int("queue", "visible"), let completed = int("orders", "completed") else { return nil }
        self.elapsed = elapsed
        self.unixTime = unixTime
        self.visible = visible
        self.inFlight = int("queue", "in_flight") ?? 0
        self.delayed = int("queue", "delayed") ?? 0
        self.deadLetter = int("queue", "dead_letter") ?? 0
        self.pending = int("orders", "pending") ?? 0
        self.processing = int("orders", "processing") ?? 0
        self.completed = completed
        self.failed = int("orders", "failed") ?? 0
        self.total = int("orders", "total") ?? 0
        self.workers = int("workers", "count") ?? 0
        self.busy = int("workers", "busy") ?? 0
        self.acceptedPerSecond = double("rates", "accepted_per_second")
        self.processedPerSecond = double("rates", "processed_per_second")
        self.charges = int("payments", "charges") ?? 0
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
        guard response.status == .ok, let json = try? JSONValue.parse(body.readableBytesView),
              let sample = StatsSample(json: json, elapsed: elapsed, unixTime: Date().timeIntervalSince1970)
        else { throw MonitorError("\(url)/stats did not answer with flashsale statistics (HTTP \(response.status.code))") }
        return sample
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
