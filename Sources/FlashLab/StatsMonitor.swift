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

    /// Messages in flight that no live worker holds (the process that received them died):
    /// they wait for their leases to end. Nil when a live worker could be holding them.
    public var strandedInFlight: (count: Int, leasesEndInSeconds: Double?)? {
        guard inFlight > 0, workers == 0 else { return nil }
        return (inFlight, stats.queue.leasesEndInSeconds)
    }

    /// When the queue will be empty at the current processing rate: `12s`, `3m20s`; `0s` when
    /// it is empty, `–` when nothing is being processed (no rate to project from).
    public var drainETA: String {
        guard queueDepth > 0 else { return "0s" }
        guard processedPerSecond > 0 else { return "–" }
        let seconds = (Double(queueDepth) / processedPerSecond).rounded(.up)
        guard seconds < 86_400 * 365 else { return "> 1 year" }
        let whole = Int(seconds)
        if whole < 60 { return "\(whole)s" }
        if whole < 3600 { return "\(whole / 60)m\(whole % 60 == 0 ? "" : "\(whole % 60)s")" }
        return "\(whole / 3600)h\((whole % 3600) / 60)m"
    }

    public static let csvHeader = "timestamp,elapsed_seconds,visible,in_flight,delayed,dead_letter,pending,processing,completed,failed,total,workers,busy,accepted_per_second,processed_per_second"

    /// The parts of the server's figures it could not read this time (stale or zero), by name.
    public var unavailable: [String] { (stats.unavailable ?? [:]).keys.sorted() }

    /// A CSV row for a sample that could not be taken: its time, every figure empty.
    public static func missedCSVRow(unixTime: Double, elapsed: Double) -> String {
        "\(Int(unixTime)),\(String(format: "%.2f", elapsed))" + String(repeating: ",", count: csvHeader.split(separator: ",").count - 2)
    }

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
        let response = try await http.execute(HTTPClientRequest(url: url + "/stats"), timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .ok, let stats = try? JSONDecoder().decode(SystemStats.self, from: Data(body.readableBytesView)) else {
            throw MonitorError("\(url)/stats did not answer with flashsale statistics (HTTP \(response.status.code))")
        }
        return StatsSample(stats: stats, elapsed: elapsed, unixTime: Date().timeIntervalSince1970)
    }

    /// Samples until `duration` seconds have passed, `until` returns true (checked after each
    /// sample) or the task is cancelled.
    /// The first reading must succeed (a wrong URL fails at once, naming it); a later one that
    /// fails (the server restarting, overloaded) is reported to `onMiss` with its time and the
    /// error, and sampling goes on.
    public func run(http: HTTPClient, duration: Double? = nil, until: @Sendable (StatsSample) -> Bool = { _ in false },
                    onMiss: @Sendable (_ elapsed: Double, _ error: any Error) -> Void = { _, _ in },
                    onSample: @Sendable (StatsSample) -> Void) async throws {
        let clock = ContinuousClock()
        let start = clock.now
        var tick = 0
        var answered = false
        while !Task.isCancelled {
            let elapsed = (clock.now - start).asSeconds
            do {
                let sample = try await Self.read(http, url: url, elapsed: elapsed)
                answered = true
                onSample(sample)
                if until(sample) { return }
            } catch where answered && !(error is CancellationError) {
                onMiss(elapsed, error)
            } catch let error as MonitorError {
                throw error
            } catch {
                throw MonitorError("no answer from \(url)/stats: \(error); is `flashsale serve` (or `worker --port`) running there?")
            }
            // The next tick on the grid from the start; ticks a slow reading overran are skipped.
            tick = max(tick + 1, Int(((clock.now - start).asSeconds / interval).rounded(.up)))
            let next = start + .milliseconds(Int64(Double(tick) * interval * 1000))
            if let duration, (next - start).asSeconds > duration { return }
            try await Task.sleep(until: next, clock: .continuous)
        }
    }
}

public struct MonitorError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
