import FlashCore
import FlashServer
import FlashWorkers
import Foundation
import Logging
import Synchronization

/// The seeds' whole study, reproduced in minutes: phase 1 loads the sync endpoint (normal, then
/// flash), phase 2 is the planner's arithmetic, phase 3 loads the async endpoint at the seeds'
/// demand, phase 4 watches the queue build up and drain, phase 5 scales the workers and finds
/// the minimum by experiment, phase 6 runs the sale against the elastic pool. First, the time
/// scale is checked (``LabConfiguration/adaptTimeScale``).
public struct Lab: Sendable {
    public internal(set) var configuration: LabConfiguration
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
        var lab = self
        var results = LabResults(configuration: configuration)
        if configuration.adaptTimeScale {
            // The study is only the seeds' if this machine delivers their demand and a pool of
            // Little's law's size keeps up at this time scale; else time runs slower.
            let check = configuration.checkPool
            while true {
                let c = lab.configuration
                progress("time scale \(c.timeScale): can this machine send \(Format.number(c.saleRate / c.timeScale)) orders/s with \(check) workers keeping up?")
                let (run, _) = try await lab.trial(workers: check, progress: progress)
                let delivered = run.demand >= 0.97 * c.saleRate / c.timeScale
                let keptUp = lab.keptUp(run)
                results.calibrations.append((c.timeScale, run.demand, keptUp))
                if (delivered && keptUp) || c.timeScale >= 1 { break }
                lab.configuration.timeScale = min(1, c.timeScale * 2)
            }
            results.configuration = lab.configuration
        }
        let c = lab.configuration
        progress("phase 1: sync endpoint, normal load (\(c.syncNormalUsers) users)")
        results.syncRuns.append(try await lab.syncRun(name: "Normal load", users: c.syncNormalUsers, duration: c.syncNormalDuration))
        progress("phase 1: sync endpoint, flash load (\(c.syncFlashUsers) users)")
        results.syncRuns.append(try await lab.syncRun(name: "Flash sale", users: c.syncFlashUsers, duration: c.syncFlashDuration))
        for workers in c.workerCounts {
            progress("phases 3-5: async flash sale, \(workers) worker\(workers == 1 ? "" : "s")")
            results.saleRuns.append(try await lab.saleRun(workers: workers, cutoff: c.observeAfterSale, progress: progress))
        }
        if c.searchMinimum {
            // Bisect between 3/4 and 3/2 of Little's law for the seeds' demand. A trial that
            // has not emptied its queue in time has fallen behind: it is cut off there.
            let planned = c.littlesLawWorkers
            var low = max(1, planned * 3 / 4), high = max(2, planned * 3 / 2)
            var found: Int?
            while low <= high {
                let mid = (low + high) / 2
                progress("phase 5: minimum workers search, trying \(mid)")
                let (run, tries) = try await lab.trial(workers: mid, progress: progress)
                let keptUp = lab.keptUp(run)
                results.minimumTrials.append((mid, keptUp, run.drainSeconds, run.peakDepth, run.demand, tries))
                if keptUp {
                    found = mid
                    high = mid - 1
                } else {
                    low = mid + 1
                }
            }
            results.minimumFound = found
        }
        progress("phase 6: the flash sale against --workers auto")
        results.elastic = try await lab.saleRun(workers: 0, cutoff: c.observeAfterSale, progress: progress)
        results.wallSeconds = (clock.now - start).asSeconds
        return results
    }

    /// One trial of a fixed pool, cut off once it has fallen behind; a pool that fell behind
    /// is tried once more. Noise on a shared machine (a pause of the process near the sale's
    /// end) only ever makes a pool look slower, never faster, so a pool that kept up in either
    /// try can keep up. Returns the better run and the tries it took.
    func trial(workers: Int, progress: @escaping @Sendable (String) -> Void) async throws -> (SaleRun, Int) {
        let c = configuration
        let first = try await saleRun(workers: workers, cutoff: c.keepUpPayments * c.paymentTime, progress: progress)
        if keptUp(first) { return (first, 1) }
        progress("  \(workers) workers fell behind; trying once more")
        let second = try await saleRun(workers: workers, cutoff: c.keepUpPayments * c.paymentTime, progress: progress)
        return (keptUp(second) || second.drainSeconds < first.drainSeconds ? second : first, 2)
    }

    /// A fixed pool kept up: its queue emptied within ``LabConfiguration/keepUpPayments``
    /// payments of the sale's end.
    func keptUp(_ run: SaleRun) -> Bool {
        !run.cutOff && run.drainSeconds <= configuration.scaled(configuration.paymentTime * configuration.keepUpPayments)
    }

    func serverConfiguration(workers: Int, name: String) -> FlashConfiguration {
        var config = FlashConfiguration()
        config.backend.path = work + "/\(name)-\(UUID().uuidString.prefix(8)).db"
        // The lab makes no admin call over HTTP: a secret nobody holds, and no file for it.
        config.api.adminToken = TimeOrderedID.make() + TimeOrderedID.make()
        config.workers.count = workers
        if workers == 0, name.hasPrefix("sale") {
            // Phase 6: the elastic pool, from one worker up to far more than the sale needs.
            let c = configuration
            config.workers.scaling = WorkerScaler.Configuration(
                minWorkers: 1, maxWorkers: 1_000, targetWait: .nanoseconds(Int64(c.scaled(c.autoTargetWait) * 1e9)),
                scaleDownWindow: .nanoseconds(Int64(c.scaled(c.autoScaleDownWindow) * 1e9)))
            config.workers.count = 1
        }
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

    // MARK: Phases 3–6

    /// The seeds' flash sale against W workers (0: `--workers auto`): open loop at the seeds'
    /// rate, time-scaled, watched until every order is finished, or until `cutoff` seed
    /// seconds after the sale (a pool that fell behind; its drain is then projected).
    func saleRun(workers: Int, cutoff: Double, progress: @escaping @Sendable (String) -> Void) async throws -> SaleRun {
        let c = configuration
        let server = serverConfiguration(workers: workers, name: "sale-w\(workers)")
        return try await LabServer.with(server, logger: logger) { url, system in
            let clock = ContinuousClock()
            let start = clock.now
            let samples = DepthLog()
            let scaling = ScalingLog()
            let saleEnded = LockedValue<Double?>(nil)
            // The monitor samples every seed second, and an elastic pool at its controller's pace.
            let interval = max(0.002, min(c.scaled(1), workers == 0 ? c.scaled(c.autoTargetWait) / 4 : .infinity))
            let label = workers == 0 ? "auto" : "\(workers)"
            let (load, seenEmpty, watched) = try await withThrowingTaskGroup(of: (LoadResult?, Double??, Double?).self) { group in
                group.addTask {
                    var load = LoadConfiguration(host: url)
                    load.endpoint = .async
                    load.rate = c.saleRate / c.timeScale
                    load.duration = c.scaled(c.saleDuration)
                    load.timeout = max(1, c.scaled(c.syncTimeout) * 2)
                    load.seed = 6650
                    let result = try await LoadGenerator(configuration: load).run()
                    saleEnded.set((clock.now - start).asSeconds)
                    return (result, nil, nil)
                }
                group.addTask {
                    var tick = 0
                    var lastReport = clock.now
                    while true {
                        let now = (clock.now - start).asSeconds
                        let queue = try await system.paymentsQueue.statistics()
                        let counts = try await system.store.counts()
                        let depth = queue.total
                        samples.append(now, depth)
                        // Workers running: those above a shrinking target finish their charges first.
                        let pool = max(system.workers?.workerCount ?? 0, system.workers?.busy ?? 0)
                        scaling.append(now, pool, queue.oldestAgeSeconds)
                        if clock.now - lastReport > .milliseconds(250) {
                            lastReport = clock.now
                            progress(String(format: "  workers %@ (now %d)  t=%@ (seed %@)  queue depth %d  completed %d",
                                            label, pool, Format.seconds(now), Format.seconds(now / c.timeScale), depth, counts.completed))
                        }
                        if let ended = saleEnded.value {
                            if depth == 0, counts.pending == 0, counts.processing == 0 {
                                // An elastic pool is watched on until it is back at its minimum
                                // (its scale-down window), for the chart.
                                if workers != 0 || pool <= 1 || now > ended + c.scaled(cutoff) { return (nil, .some(now), now) }
                            } else if now > ended + c.scaled(cutoff) {
                                return (nil, .some(nil), now)
                            }
                        }
                        tick += 1
                        try await Task.sleep(until: start + .nanoseconds(Int64(Double(tick) * interval * 1e9)), clock: .continuous)
                    }
                }
                var load: LoadResult?
                var empty: Double??
                var watched: Double?
                for try await (result, time, seen) in group {
                    if let result { load = result }
                    if let time { empty = time }
                    if let seen { watched = seen }
                }
                return (load!, empty!, watched!)
            }
            var counts = try await system.store.counts()
            var emptyAt = seenEmpty
            if emptyAt != nil, counts.completed + counts.failed < counts.total {
                // A request the load generator gave up on (its client timeout, on a busy
                // machine) can still be placed after the monitor saw the queue empty: the run
                // ends when those are finished too, or counts as cut off.
                let settleBy = clock.now + .seconds(10)
                while counts.completed + counts.failed < counts.total, clock.now < settleBy {
                    try await Task.sleep(for: .milliseconds(20))
                    counts = try await system.store.counts()
                }
                emptyAt = counts.completed + counts.failed < counts.total ? nil : (clock.now - start).asSeconds
            }
            // An elastic pool's queue emptied before it shrank back: the orders' span ends there.
            let depth = samples.values
            var drained = emptyAt
            if workers == 0, let empty = emptyAt, let busy = depth.last(where: { $0.1 > 0 }) {
                drained = min(empty, max(saleEnded.value ?? 0, depth.first { $0.0 > busy.0 }?.0 ?? empty))
            }
            return SaleRun(
                workers: workers, arrivals: counts.total, saleSeconds: saleEnded.value ?? load.elapsed,
                emptyAt: drained, observedSeconds: watched, peakDepth: depth.map(\.1).max() ?? 0, completed: counts.completed,
                failed: counts.failed, depth: depth, load: load, paymentSeconds: c.scaled(c.paymentTime),
                scaling: workers == 0 ? scaling.values : [])
        }
    }
}

/// An elastic pool's samples: (wall seconds, workers, oldest message's age).
final class ScalingLog: Sendable {
    private let list = Mutex<[(time: Double, workers: Int, oldestAge: Double)]>([])
    func append(_ time: Double, _ workers: Int, _ age: Double) { list.withLock { $0.append((time, workers, age)) } }
    var values: [(time: Double, workers: Int, oldestAge: Double)] { list.withLock { $0 } }
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
