import ArgumentParser
import FlashCore
import FlashOrders
import FlashPayments
import FlashServer
import Foundation
import Logging
import ServiceLifecycle

/// `flashsale bench workers`: does the pool complete W/L orders per second?
///
/// For each worker count W, a fresh database is filled with enough orders for `--seconds` of
/// work at W/L orders/s; then the pool starts and the completions are timed. The steady rate is
/// measured between 10% and 90% of the orders completed (ramp-up and tail excluded). With a fixed
/// latency, W workers finish orders in waves of W; the order count and both marks are whole
/// multiples of W, so the window spans whole waves and does not over- or under-count.
struct WorkersBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workers",
        abstract: "Benchmark the worker pool's processing rate against the theoretical W/L.")

    @Option(help: "Worker counts to measure, comma-separated.")
    var workers: String = "1,5,20,100,200"

    @Option(help: "Payment latency L.")
    var latency: String = "30ms"

    @Option(help: "Seconds of work to queue for each worker count.")
    var seconds: Double = 4

    @Option(help: "Directory for the benchmark databases.")
    var directory: String = NSTemporaryDirectory()

    func run() async throws {
        guard let latency = Duration(parsing: latency), latency > .zero else { throw ValidationError("--latency must be a duration such as 30ms") }
        let counts = workers.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !counts.isEmpty, counts.allSatisfy({ $0 > 0 }) else { throw ValidationError("--workers must list positive counts") }
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        print("worker pool benchmark: payment latency \(latency.shortDescription), \(ProcessInfo.processInfo.activeProcessorCount) cores, durable commits")
        print("workers   theory/s   measured/s   ratio    orders")
        for count in counts {
            let result = try await measure(workers: count, latency: latency, logger: logger)
            print(String(format: "%7d %10.1f %12.1f %7.1f%% %9d", count, result.theory, result.measured, result.measured / result.theory * 100, result.orders))
        }
    }

    struct Result { var theory: Double; var measured: Double; var orders: Int }

    func measure(workers: Int, latency: Duration, logger: Logger) async throws -> Result {
        try await Self.measure(workers: workers, latency: latency, seconds: seconds, directory: directory, logger: logger)
    }

    /// W/L, and the pool's measured rate over `seconds` of queued work.
    static func measure(workers: Int, latency: Duration, seconds: Double, directory: String, logger: Logger) async throws -> Result {
        let theory = Double(workers) / latency.asSeconds
        let waves = (max(Int(theory * seconds), workers * 5, 50) + workers - 1) / workers
        let orders = waves * workers
        let measured = try await drainRate(workers: workers, latency: latency, orders: orders, directory: directory, logger: logger)
        return Result(theory: theory, measured: measured, orders: orders)
    }

    /// Fills a fresh database with `orders` queued orders, then starts a pool of `workers` whose
    /// every charge takes `latency`, and times the completions: orders per second between 10% and
    /// 90% completed (ramp-up and tail excluded). With a fixed latency, W workers finish orders in
    /// waves of W; `orders` and both marks are whole multiples of W, so the window spans whole
    /// waves and does not over- or under-count.
    static func drainRate(workers: Int, latency: Duration, orders: Int, directory: String, logger: Logger) async throws -> Double {
        let waves = { (count: Int) in (count + workers - 1) / workers }
        var config = FlashConfiguration()
        config.backend.path = (directory as NSString).appendingPathComponent("flashsale-bench-workers-\(UUID().uuidString).db")
        config.api.adminToken = TimeOrderedID.make() + TimeOrderedID.make()
        config.workers.count = workers
        config.payment.latency = .fixed(latency)
        config.queue.visibilityTimeout = .seconds(60)
        let system = try await FlashSystem.open(config, logger: logger)
        defer {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: config.backend.path + suffix) }
        }
        // Fill the queue: 64 concurrent producers.
        let store = system.store
        try await withThrowingTaskGroup(of: Void.self) { group in
            for producer in 0..<64 {
                group.addTask {
                    var n = producer
                    while n < orders {
                        _ = try await store.placeQueued(NewOrder(
                            id: TimeOrderedID.make(), customerID: "c\(n)",
                            items: [OrderItem(productID: "PROD-001", quantity: 1, price: 10)], channel: .async, idempotencyKey: nil))
                        n += 64
                    }
                }
            }
            try await group.waitForAll()
        }
        let group = ServiceGroup(configuration: .init(services: [system.backend, system.workers!], logger: logger))
        let clock = ContinuousClock()
        var low: ContinuousClock.Instant?
        var high: ContinuousClock.Instant?
        let lowMark = waves(orders / 10) * workers
        let highMark = max(lowMark + workers, (orders * 9 / 10) / workers * workers)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            while true {
                let done = try await store.counts().completed
                if low == nil, done >= lowMark { low = clock.now }
                if high == nil, done >= highMark { high = clock.now }
                if done >= orders { break }
                try await Task.sleep(for: .milliseconds(2))
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        return Double(highMark - lowMark) / (high! - low!).asSeconds
    }
}
