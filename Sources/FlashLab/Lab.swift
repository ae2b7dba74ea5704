import FlashCore
import FlashServer
import Foundation
import Logging
import Synchronization

/// The seeds' whole study, reproduced in minutes: phase 1 loads the sync endpoint (normal, then
/// flash), phase 2 is the planner's arithmetic, phase 3 loads the async endpoint, phase 4 watches
/// the queue build up and drain, phase 5 scales the workers and finds the minimum by experiment.
public struct Lab: Sendable {
    public let configuration: LabConfiguration
    let logger: Logger
    let work: String

    public init(configuration: LabConfiguration) {
        self.configuration = configuration
        var logger = Logger(label: "lab")
        logger.logLevel = .error
        self.logger = logger
        self.work = NSTemporaryDirectory() + "flashsale-lab-\(UUID().uuidString)"
    }

    /// Runs every phase; `progress` gets one-line updates (phase, queue depth).
    public func run(progress: @escaping @Sendable (String) -> Void) async throws -> LabResults {
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let clock = ContinuousClock()
        let start = clock.now
        var results = LabResults(configuration: configuration)
        let c = configuration
        progress("phase 1: sync endpoint, normal load (\(c.syncNormalUsers) users)")
        results.syncRuns.append(try await syncRun(name: "Normal load", users: c.syncNormalUsers, duration: c.syncNormalDuration))
        progress("phase 1: sync endpoint, flash load (\(c.syncFlashUsers) users)")
        results.syncRuns.append(try await syncRun(name: "Flash sale", users: c.syncFlashUsers, duration: c.syncFlashDuration))
        for workers in c.workerCounts {
            progress("phases 3-5: async flash sale, \(workers) worker\(workers == 1 ? "" : "s")")
            results.saleRuns.append(try await saleRun(workers: workers, progress: progress))
        }
        if c.searchMinimum, let reference = results.saleRuns.first {
            // Bisect between 1 and twice Little's law for the demand actually measured.
            let planned = reference.theory.minimumWorkers
            var low = 1, high = max(2, planned * 2)
            var found: Int?
            while low <= high {
                let mid = (low + high) / 2
                progress("phase 5: minimum workers search, trying \(mid)")
                let run = try await saleRun(workers: mid, progress: progress)
                let keptUp = run.drainSeconds <= c.scaled(c.paymentTime) * 2 + 0.02
                results.minimumTrials.append((mid, keptUp, run.drainSeconds, run.peakDepth, run.demand))
                if keptUp {
                    found = mid
                    high = mid - 1
                } else {
                    low = mid + 1
                }
            }
            results.minimumFound = found
        }
        results.wallSeconds = (clock.now - start).asSeconds
        return results
    }

    func serverConfiguration(workers: Int, name: String) -> FlashConfiguration {
        var config = FlashConfiguration()
        config.backend.path = work + "/\(name)-\(UUID().uuidString.prefix(8)).db"
        // The lab makes no admin call over HTTP: a secret nobody holds, and no file for it.
        config.api.adminToken = TimeOrderedID.make() + TimeOrderedID.make()
        config.workers.count = workers
        config.payment.latency = .fixed(.nanoseconds(Int64(configuration.scaled(configuration.paymentTime) * 1e9)))
        config.api.syncLanes = 1
        config.api.syncTimeout = .nanoseconds(Int64(configuration.scaled(configuration.syncTimeout) * 1e9))
        config.queue.visibilityTimeout = .seconds(30)
        config.workers.shutdownDeadline = .seconds(1)
        return config
    }

    func loadConfiguration(url: String, endpoint: LoadConfiguration.Endpoint, users: Int, duration: Double) -> LoadConfiguration {
        var load = LoadConfiguration(host: url)
        load.endpoint = endpoint
        load.users = users
        load.spawnRate = configuration.spawnRate / configuration.timeScale
        load.wait = configuration.scaled(configuration.wait.lowerBound)...configuration.scaled(configuration.wait.upperBound)
        load.duration = configuration.scaled(duration)
        load.timeout = max(1, configuration.scaled(configuration.syncTimeout) * 2)
        load.seed = 6650
        return load
    }

    // MARK: Phase 1

    func syncRun(name: String, users: Int, duration: Double) async throws -> SyncRun {
        let server = serverConfiguration(workers: 0, name: "sync")
        let load = try await LabServer.with(server, logger: logger) { url, _ in
            try await LoadGenerator(configuration: loadConfiguration(url: url, endpoint: .sync, users: users, duration: duration)).run()
        }
        return SyncRun(name: name, users: users, load: load, paymentSeconds: configuration.scaled(configuration.paymentTime), lanes: 1)
    }

    // MARK: Phases 3–5

    func saleRun(workers: Int, progress: @escaping @Sendable (String) -> Void) async throws -> SaleRun {
        let c = configuration
        let server = serverConfiguration(workers: workers, name: "sale-w\(workers)")
        return try await LabServer.with(server, logger: logger) { url, system in
            let clock = ContinuousClock()
            let start = clock.now
            let samples = DepthLog()
            let saleEnded = LockedValue<Double?>(nil)
            let interval = max(0.002, c.scaled(1))
            let (load, emptyAt) = try await withThrowingTaskGroup(of: (LoadResult?, Double?).self) { group in
                group.addTask {
                    let result = try await LoadGenerator(configuration: self.loadConfiguration(
                        url: url, endpoint: .async, users: c.asyncUsers, duration: c.saleDuration)).run()
                    saleEnded.set((clock.now - start).asSeconds)
                    return (result, nil)
                }
                group.addTask {
                    // The monitor: depth at every tick (1 s of seed time), until the sale is over and all is done.
                    var tick = 0
                    var lastReport = clock.now
                    while true {
                        let now = (clock.now - start).asSeconds
                        let queue = try await system.paymentsQueue.statistics()
                        let counts = try await system.store.counts()
                        let depth = queue.total
                        samples.append(now, depth)
                        if clock.now - lastReport > .milliseconds(250) {
                            lastReport = clock.now
                            progress(String(format: "  workers %d  t=%@ (seed %@)  queue depth %d  completed %d",
                                            workers, Format.seconds(now), Format.seconds(now / c.timeScale), depth, counts.completed))
                        }
                        if saleEnded.value != nil, depth == 0, counts.pending == 0, counts.processing == 0 {
                            return (nil, now)
                        }
                        tick += 1
                        try await Task.sleep(until: start + .nanoseconds(Int64(Double(tick) * interval * 1e9)), clock: .continuous)
                    }
                }
                var load: LoadResult?
                var empty: Double?
                for try await (result, time) in group {
                    if let result { load = result }
                    if let time { empty = time }
                }
                return (load!, empty!)
            }
            var counts = try await system.store.counts()
            // A request the load generator gave up on (its client timeout, on a busy machine)
            // can still be placed after the monitor saw the queue empty: let those finish too.
            let settleBy = clock.now + .seconds(10)
            while counts.completed + counts.failed < counts.total, clock.now < settleBy {
                try await Task.sleep(for: .milliseconds(20))
                counts = try await system.store.counts()
            }
            let depth = samples.values
            return SaleRun(
                workers: workers, arrivals: counts.total, saleSeconds: saleEnded.value ?? load.elapsed,
                emptySeconds: emptyAt, peakDepth: depth.map(\.1).max() ?? 0, completed: counts.completed,
                failed: counts.failed, depth: depth, load: load, paymentSeconds: c.scaled(c.paymentTime))
        }
    }
}

/// Queue-depth samples of one run.
final class DepthLog: Sendable {
    private let list = Mutex<[(Double, Int)]>([])
    func append(_ time: Double, _ depth: Int) { list.withLock { $0.append((time, depth)) } }
    var values: [(Double, Int)] { list.withLock { $0 } }
}

/// A value shared between the lab's tasks.
final class LockedValue<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>
    init(_ value: Value) { storage = Mutex(value) }
    func set(_ value: Value) { storage.withLock { $0 = value } }
    var value: Value { storage.withLock { $0 } }
}
