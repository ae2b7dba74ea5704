import DequeModule
import FlashBackend
import FlashCore
import FlashOrders
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The dashboard's data: once a second, one reading of the fleet's figures (the same as
/// `/stats`), the flash product's stock and this process's accept latency, kept for ten minutes
/// and sent to every open dashboard.
///
/// One reading serves every viewer, so a hundred open dashboards cost the backend what one
/// does. A Service: it reads until shutdown, then ends every stream.
public final class DashboardFeed: Service, Sendable {
    /// One reading, as the page receives it (field names are the page's contract).
    public struct Snapshot: Sendable, Codable, Hashable {
        public struct Workers: Sendable, Codable, Hashable {
            public var count: Int
            public var busy: Int
            public var processes: Int
        }

        public struct Rates: Sendable, Codable, Hashable {
            public var acceptedPerSecond: Double
            public var processedPerSecond: Double

            enum CodingKeys: String, CodingKey {
                case acceptedPerSecond = "accepted_per_second"
                case processedPerSecond = "processed_per_second"
            }
        }

        public struct Latency: Sendable, Codable, Hashable {
            public var count: Int
            public var p50Milliseconds: Double?
            public var p99Milliseconds: Double?

            enum CodingKeys: String, CodingKey {
                case count
                case p50Milliseconds = "p50_ms"
                case p99Milliseconds = "p99_ms"
            }

            public func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(count, forKey: .count)
                // Explicit nulls: the page tells "nothing accepted" from a missing field.
                try container.encode(p50Milliseconds, forKey: .p50Milliseconds)
                try container.encode(p99Milliseconds, forKey: .p99Milliseconds)
            }
        }

        public struct Stock: Sendable, Codable, Hashable {
            public var product: String
            public var units: Int?

            enum CodingKeys: String, CodingKey { case product, units }

            public func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(product, forKey: .product)
                try container.encode(units, forKey: .units)
            }
        }

        public struct Settlements: Sendable, Codable, Hashable {
            public var completed: Int
            public var failed: Int
        }

        /// Requests this process refused before storing anything (admission control).
        public struct Shed: Sendable, Codable, Hashable {
            /// Refused per second since the previous reading.
            public var perSecond: Double
            /// Refused since the process started, by reason.
            public var total: [String: Int]
            /// The longest a placement waited for its transaction to begin, recently (queue time), ms.
            public var waitMs: Double
            /// The placements that may wait for the store now (more are refused on arrival); nil
            /// before the store's groups were timed.
            public var limit: Int?

            enum CodingKeys: String, CodingKey {
                case total, limit
                case perSecond = "per_second"
                case waitMs = "wait_ms"
            }
        }

        /// When it was read (Unix ms).
        public var t: Int64
        public var orders: SystemStats.Orders
        public var queue: SystemStats.Queue
        public var workers: Workers
        /// Orders accepted and finished per second since the previous reading (the fleet's).
        public var rates: Rates
        /// This process's accept latency over the last interval.
        public var acceptLatency: Latency
        public var stock: Stock
        public var reconciler: Settlements
        public var outbox: SystemStats.Outbox?
        /// This process's refused requests; absent when it places no orders.
        public var shed: Shed?
        /// The parts of the reading the server could not read (their figures are the last it had).
        public var unavailable: [String: SystemStats.Unavailable]?

        enum CodingKeys: String, CodingKey {
            case t, orders, queue, workers, rates, stock, reconciler, outbox, shed, unavailable
            case acceptLatency = "accept_latency"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(t, forKey: .t)
            try container.encode(orders, forKey: .orders)
            try container.encode(queue, forKey: .queue)
            try container.encode(workers, forKey: .workers)
            try container.encode(rates, forKey: .rates)
            try container.encode(acceptLatency, forKey: .acceptLatency)
            try container.encode(stock, forKey: .stock)
            try container.encode(reconciler, forKey: .reconciler)
            try container.encode(outbox, forKey: .outbox)
            try container.encodeIfPresent(shed, forKey: .shed)
            try container.encodeIfPresent(unavailable, forKey: .unavailable)
        }
    }

    public struct Configuration: Sendable {
        /// Time between readings.
        public var interval: Duration = .seconds(1)
        /// How much history a newly opened page receives.
        public var window: Duration = .seconds(600)
        /// Dashboards open at once; more are refused (503).
        public var maxViewers: Int = 100

        public init() {}
    }

    /// A viewer's stream: what it missed (the history) and what comes.
    public struct Subscription: Sendable {
        /// The `history` event's data: `{"interval_ms","window_seconds","product","snapshots":[…]}`.
        public var history: String
        /// Each later reading's JSON, or ``DashboardFeed/keepAlive`` for a tick without one.
        public var snapshots: AsyncStream<String>
        let continuation: AsyncStream<String>.Continuation

        /// Ends the stream (the viewer is let go).
        public func end() {
            continuation.finish()
        }
    }

    private struct State {
        var history = Deque<(t: Int64, json: String)>()
        var viewers: [Int: AsyncStream<String>.Continuation] = [:]
        var nextViewer = 0
        var previous: (t: Int64, total: Int, finished: Int, shed: Int)?
        var stopped = false
    }

    public let configuration: Configuration
    let reader: SystemStatsReader
    let catalog: (any Catalog)?
    let product: String
    let latency: AcceptLatencyWindow
    let logger: Logger
    private let state = Mutex(State())

    public init(configuration: Configuration = Configuration(), reader: SystemStatsReader, catalog: (any Catalog)?, product: String,
                latency: AcceptLatencyWindow, logger: Logger) {
        self.configuration = configuration
        self.reader = reader
        self.catalog = catalog
        self.product = product
        self.latency = latency
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var next = ContinuousClock.now
            while !Task.isCancelled {
                await self.read()
                next += self.configuration.interval
                if next < .now { next = .now }
                try? await Task.sleep(until: next, clock: .continuous)
            }
        }
        let viewers = state.withLock { state in
            state.stopped = true
            defer { state.viewers = [:] }
            return Array(state.viewers.values)
        }
        for viewer in viewers { viewer.finish() }
    }

    /// Opens a stream for one page; nil when ``Configuration/maxViewers`` are open or the feed
    /// has stopped.
    public func subscribe() -> Subscription? {
        let (stream, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(30))
        let opened = state.withLock { state -> (Int, [String])? in
            guard !state.stopped, state.viewers.count < configuration.maxViewers else { return nil }
            let id = state.nextViewer
            state.nextViewer += 1
            state.viewers[id] = continuation
            return (id, state.history.map(\.json))
        }
        guard let (id, snapshots) = opened else {
            continuation.finish()
            return nil
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { _ = $0.viewers.removeValue(forKey: id) }
        }
        let interval = Int(configuration.interval.asSeconds * 1000)
        let window = Int(configuration.window.asSeconds)
        let history = #"{"interval_ms":\#(interval),"window_seconds":\#(window),"product":\#(JSONText.quoted(product)),"snapshots":[\#(snapshots.joined(separator: ","))]}"#
        return Subscription(history: history, snapshots: stream, continuation: continuation)
    }

    /// Dashboards open now.
    public var viewers: Int { state.withLock { $0.viewers.count } }

    /// Takes one reading now, keeps it and sends it to every viewer (``run()`` does once per interval). A reading the backend cannot
    /// give in time is skipped (the page shows a gap).
    public func read() async {
        let reader = self.reader
        let catalog = self.catalog
        let product = self.product
        let limit = max(configuration.interval * 3, .seconds(2))
        let stats: SystemStats
        let units: Int?
        do {
            (stats, units) = try await withTimeout(limit) {
                let stats = await reader.snapshot()
                // Without the order counts there is no picture to draw: skipped, as a whole
                // reading the backend cannot give. Another part missing is drawn, and marked.
                if let missing = stats.unavailable?["orders"] { throw BackendUnavailable(reason: missing.reason) }
                let units = try await catalog?.product(id: product)?.stock
                return (stats, units)
            }
        } catch {
            if !(error is CancellationError) { logger.debug("dashboard reading skipped", metadata: ["error": "\(error)"]) }
            // The pages hear from the server all the same (a `ping`), so that a slow backend is
            // not taken for a dead connection, and a page that went away is noticed at once.
            for viewer in state.withLock({ Array($0.viewers.values) }) { viewer.yield(Self.keepAlive) }
            return
        }
        let figures = latency.take()
        let t = WallClock.nowMillis()
        let total = stats.orders.total
        let finished = stats.orders.completed + stats.orders.failed
        let shedTotal = stats.admission.map { $0.shed.values.reduce(0, +) } ?? 0
        let (rates, shedRate) = state.withLock { state -> (Snapshot.Rates, Double) in
            defer { state.previous = (t, total, finished, shedTotal) }
            guard let previous = state.previous, t > previous.t else {
                return (Snapshot.Rates(acceptedPerSecond: stats.rates.acceptedPerSecond, processedPerSecond: stats.rates.processedPerSecond), 0)
            }
            let seconds = Double(t - previous.t) / 1000
            let perSecond = { (delta: Int) in (max(0, Double(delta)) / seconds * 10).rounded() / 10 }
            return (Snapshot.Rates(acceptedPerSecond: perSecond(total - previous.total), processedPerSecond: perSecond(finished - previous.finished)),
                    perSecond(shedTotal - previous.shed))
        }
        let snapshot = Snapshot(
            t: t, orders: stats.orders, queue: stats.queue,
            workers: .init(count: stats.workers.count, busy: stats.workers.busy, processes: stats.workers.processes),
            rates: rates,
            acceptLatency: .init(count: figures.count, p50Milliseconds: figures.p50Milliseconds, p99Milliseconds: figures.p99Milliseconds),
            stock: .init(product: product, units: units),
            reconciler: .init(completed: stats.reconciler.completed, failed: stats.reconciler.failed),
            outbox: stats.outbox, shed: stats.admission.map {
                .init(perSecond: shedRate, total: $0.shed, waitMs: ($0.longestWaitSeconds * 10_000).rounded() / 10, limit: $0.limit)
            }, unavailable: stats.unavailable)
        guard let data = try? Self.encoder.encode(snapshot), let json = String(data: data, encoding: .utf8) else { return }
        let windowMillis = Int64(configuration.window.asSeconds * 1000)
        let viewers = state.withLock { state -> [AsyncStream<String>.Continuation] in
            state.history.append((t, json))
            while let first = state.history.first, first.t < t - windowMillis { state.history.removeFirst() }
            return Array(state.viewers.values)
        }
        for viewer in viewers { viewer.yield(json) }
    }

    /// Sent instead of a reading the backend could not give in time.
    public static let keepAlive = ""

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()
}
