import FlashBackend
import FlashCore
import FlashOrders
import FlashPayments
import FlashQueue
import FlashWorkers
import Foundation
import Hummingbird
import Synchronization

/// `GET /health`, `GET /stats`, `GET /workers` and `GET /openapi.json`: the figures the
/// monitor, the lab and the dashboard read, and the API's description. Every process serves
/// them (a worker on its side port), and every process answers for the whole fleet: counts are
/// the backend's stored counters, workers and rates the live processes' heartbeats.
struct SystemController<Context: RequestContext> {
    let reader: SystemStatsReader
    let membership: FleetMembership
    let startedAtMillis: Int64

    func addRoutes(to routes: inout RouteTable<Context>) {
        routes.on("/", method: .get, use: index)
        routes.on("/health", method: .get, use: health)
        routes.on("/stats", method: .get, use: stats)
        routes.on("/workers", method: .get, use: workers)
        routes.on("/openapi.json", method: .get, use: openAPI)
    }

    /// Where a newcomer lands: what this server is and links to what it serves; an HTML page
    /// for a browser (`Accept: text/html`), JSON for anything else.
    @Sendable func index(_ request: Request, context: Context) async throws -> Response {
        if request.headers[.accept]?.contains("text/html") == true {
            let items = Self.links.map { #"<li><a href="\#($0.path)">\#($0.path)</a> — \#($0.what)</li>"# }.joined(separator: "\n")
            let page = """
                <!DOCTYPE html>
                <html lang="en"><head><meta charset="utf-8"><title>flashsale</title></head>
                <body><h1>flashsale \(FlashVersion.current)</h1>
                <p>A flash-sale order-processing engine. Place orders with <code>POST /orders/async</code> or <code>POST /orders/sync</code>.</p>
                <ul>
                \(items)
                </ul></body></html>
                """
            return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: page)))
        }
        let fields = Self.links.map { "\(JSONText.quoted($0.name)):\(JSONText.quoted($0.path))" }.joined(separator: ",")
        return Response.json(.ok, #"{"service":"flashsale","version":\#(JSONText.quoted(FlashVersion.current)),"links":{\#(fields)}}"#)
    }

    /// What `GET /` links to.
    static var links: [(name: String, path: String, what: String)] { [
        ("dashboard", "/dashboard", "live queue, workers and orders"),
        ("openapi", "/openapi.json", "the API's OpenAPI 3.1 document"),
        ("metrics", "/metrics", "Prometheus metrics"),
        ("stats", "/stats", "the queue and order counts as JSON"),
        ("health", "/health", "liveness"),
        ("products", "/products", "the catalog"),
    ] }

    @Sendable func health(_ request: Request, context: Context) async throws -> Response {
        let uptime = Double(WallClock.nowMillis() - startedAtMillis) / 1000
        let workers = membership.record().workers
        return Response.json(.ok, #"{"status":"healthy","uptime_seconds":\#(JSONText.number((uptime * 10).rounded() / 10)),"workers":\#(workers),"process_id":\#(JSONText.quoted(membership.processID))}"#)
    }

    /// The ``SystemStats`` contract.
    @Sendable func stats(_ request: Request, context: Context) async throws -> Response {
        try Response.json(.ok, Self.encoder.encode(await reader.snapshot()))
    }

    /// The live processes, like Sidekiq's process list.
    @Sendable func workers(_ request: Request, context: Context) async throws -> Response {
        let processes = try await membership.liveProcesses()
        return try Response.json(.ok, Self.encoder.encode(FleetList(processes: processes, workers: processes.reduce(0) { $0 + $1.workers },
                                                             busy: processes.reduce(0) { $0 + $1.busy })))
    }

    /// The OpenAPI 3.1 document of the whole API (`Sources/FlashAPI/Resources/openapi.json`,
    /// built into the binary).
    @Sendable func openAPI(_ request: Request, context: Context) async throws -> Response {
        Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-cache"],
                 body: .init(byteBuffer: ByteBuffer(bytes: PackageResources.openapi_json)))
    }

    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }
}

/// Reads the fleet's figures (``SystemStats``) from the backend and the live processes: what
/// `/stats`, `/metrics` and the dashboard show.
///
/// Each part (the order counts, the queue, the gateway's payments, the settlements, the fleet,
/// the outbox) is read at once beside the others and waited for at most ``partLimit``: a part
/// whose dependency is down or slow shows its last figures, marked in
/// ``SystemStats/unavailable``, and the rest is answered all the same. Before, one dependency
/// down (the payment gateway, SQS) made `/stats` fail whole after 8.5 s.
public struct SystemStatsReader: Sendable {
    let store: any OrderStore
    let gateway: any PaymentGateway
    let membership: FleetMembership
    let reconciler: Reconciler?
    let lanes: CheckoutLanes
    /// The backend's outbox, when the payments queue is SQS.
    let outbox: (any MessageQueue)?
    /// This process's admission control, if its routes place orders.
    let admission: AdmissionControl?
    /// The last figures read of each part.
    let memory = PartMemory()

    /// The longest one part is waited for.
    static let partLimit: Duration = .seconds(2)

    public func snapshot() async -> SystemStats {
        let (store, gateway, membership, outbox, memory) = (self.store, self.gateway, self.membership, self.outbox, self.memory)
        let limit = Self.partLimit
        async let orders = memory.read("orders", zero: OrderCounts(), within: limit) { try await store.counts() }
        async let queue = memory.read("queue", zero: QueueStatistics(), within: limit) { try await store.paymentsQueue.statistics() }
        async let payments = memory.read("payments", zero: PaymentStatistics(), within: limit) { try await gateway.statistics() }
        async let settled = memory.read("settlements", zero: SettlementCounts(), within: limit) { try await store.settlementCounts() }
        async let processes = memory.read("processes", zero: [ProcessRecord](), within: limit) { try await membership.liveProcesses() }
        async let outboxQueue = memory.read("outbox", zero: QueueStatistics?.none, within: limit) { try await outbox?.statistics() }
        async let pause = memory.read("pause", zero: QueuePause.State(paused: false), within: limit) {
            try await membership.pauses.state(of: store.paymentsQueue.name)
        }
        let parts = await (orders: orders, queue: queue, payments: payments, settled: settled, processes: processes, outbox: outboxQueue,
                           pause: pause)
        var unavailable: [String: SystemStats.Unavailable] = [:]
        for (name, missing) in [("orders", parts.orders.missing), ("queue", parts.queue.missing), ("payments", parts.payments.missing),
                                ("settlements", parts.settled.missing), ("processes", parts.processes.missing), ("outbox", parts.outbox.missing),
                                ("pause", parts.pause.missing)] {
            if let missing { unavailable[name] = missing }
        }
        let own = reconciler?.statistics
        let (counts, queueStats, paid, settledCounts, live) = (parts.orders.value, parts.queue.value, parts.payments.value,
                                                              parts.settled.value, parts.processes.value)
        let rounded = { (value: Double) in (value * 100).rounded() / 100 }
        return SystemStats(
            orders: .init(total: counts.total, pending: counts.pending, processing: counts.processing,
                          completed: counts.completed, failed: counts.failed),
            queue: .init(visible: queueStats.visible, inFlight: queueStats.inFlight, delayed: queueStats.delayed, deadLetter: queueStats.deadLettered,
                         oldestAgeSeconds: rounded(queueStats.oldestAgeSeconds), paused: parts.pause.value.paused,
                         leasesEndInSeconds: queueStats.leasesEndInSeconds.map(rounded)),
            workers: .init(count: live.reduce(0) { $0 + $1.workers }, busy: live.reduce(0) { $0 + $1.busy },
                           processes: live.filter { $0.workers > 0 }.count),
            payments: .init(charges: paid.charges, declines: paid.declines,
                            duplicateChargesPrevented: paid.duplicateChargesPrevented, voided: paid.voided),
            reconciler: .init(completed: settledCounts.completed, failed: settledCounts.failed, unresolved: own?.unresolved ?? 0, sweeps: own?.sweeps ?? 0),
            rates: .init(acceptedPerSecond: rounded(live.reduce(0) { $0 + $1.acceptedPerSecond }),
                         processedPerSecond: rounded(live.reduce(0) { $0 + $1.processedPerSecond })),
            sync: .init(lanes: lanes.lanes, busy: lanes.busy, waiting: lanes.waiting),
            processes: live,
            outbox: outbox == nil ? nil : parts.outbox.value.map { .init(pending: $0.total, lagSeconds: rounded($0.oldestAgeSeconds)) },
            admission: admission?.statistics,
            unavailable: unavailable.isEmpty ? nil : unavailable)
    }
}

/// The last figures read of each part of ``SystemStats``, so that a part that cannot be read
/// now shows them (marked stale) instead of failing the whole reading.
final class PartMemory: Sendable {
    private let last = Mutex<[String: (value: any Sendable, at: ContinuousClock.Instant)]>([:])

    /// What `body` reads within `limit`, remembered; else the last value remembered for `part`
    /// (or `zero`), with why it is missing.
    func read<T: Sendable>(_ part: String, zero: T, within limit: Duration,
                           _ body: @escaping @Sendable () async throws -> T) async -> (value: T, missing: SystemStats.Unavailable?) {
        do {
            let value = try await withTimeout(limit, body)
            last.withLock { $0[part] = (value, .now) }
            return (value, nil)
        } catch {
            let reason = error is TimeoutError ? "no answer within \(limit.shortDescription)" : "\(error)"
            guard let previous = last.withLock({ $0[part] }), let value = previous.value as? T else {
                return (zero, SystemStats.Unavailable(reason: reason, staleSeconds: nil))
            }
            let age = ((ContinuousClock.now - previous.at).asSeconds * 10).rounded() / 10
            return (value, SystemStats.Unavailable(reason: reason, staleSeconds: age))
        }
    }
}
