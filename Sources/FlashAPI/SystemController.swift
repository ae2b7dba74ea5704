import FlashBackend
import FlashCore
import FlashOrders
import FlashPayments
import FlashQueue
import FlashWorkers
import Foundation
import Hummingbird

/// `GET /health`, `GET /stats`, `GET /workers` and `GET /openapi.json`: the figures the
/// monitor, the lab and the dashboard read, and the API's description. Every process serves
/// them (a worker on its side port), and every process answers for the whole fleet: counts are
/// the backend's stored counters, workers and rates the live processes' heartbeats.
struct SystemController<Context: RequestContext> {
    let reader: SystemStatsReader
    let membership: FleetMembership
    let startedAtMillis: Int64

    func addRoutes(to routes: inout RouteTable<Context>) {
        routes.on("/health", method: .get, use: health)
        routes.on("/stats", method: .get, use: stats)
        routes.on("/workers", method: .get, use: workers)
        routes.on("/openapi.json", method: .get, use: openAPI)
    }

    @Sendable func health(_ request: Request, context: Context) async throws -> Response {
        let uptime = Double(WallClock.nowMillis() - startedAtMillis) / 1000
        let workers = membership.record().workers
        return Response.json(.ok, #"{"status":"healthy","uptime_seconds":\#(JSONText.number((uptime * 10).rounded() / 10)),"workers":\#(workers),"process_id":\#(JSONText.quoted(membership.processID))}"#)
    }

    /// The ``SystemStats`` contract.
    @Sendable func stats(_ request: Request, context: Context) async throws -> Response {
        try Response.json(.ok, Self.encoder.encode(try await reader.snapshot()))
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
public struct SystemStatsReader: Sendable {
    let store: any OrderStore
    let gateway: any PaymentGateway
    let membership: FleetMembership
    let reconciler: Reconciler?
    let lanes: CheckoutLanes
    /// The backend's outbox, when the payments queue is SQS.
    let outbox: (any MessageQueue)?

    public func snapshot() async throws -> SystemStats {
        let orders = try await store.counts()
        let queue = try await store.paymentsQueue.statistics()
        let payments = try await gateway.statistics()
        let settled = try await store.settlementCounts()
        let own = reconciler?.statistics
        let processes = try await membership.liveProcesses()
        let outboxQueue = try await outbox?.statistics()
        let rounded = { (value: Double) in (value * 100).rounded() / 100 }
        return SystemStats(
            orders: .init(total: orders.total, pending: orders.pending, processing: orders.processing,
                          completed: orders.completed, failed: orders.failed),
            queue: .init(visible: queue.visible, inFlight: queue.inFlight, delayed: queue.delayed, deadLetter: queue.deadLettered,
                         oldestAgeSeconds: rounded(queue.oldestAgeSeconds)),
            workers: .init(count: processes.reduce(0) { $0 + $1.workers }, busy: processes.reduce(0) { $0 + $1.busy },
                           processes: processes.filter { $0.workers > 0 }.count),
            payments: .init(charges: payments.charges, declines: payments.declines,
                            duplicateChargesPrevented: payments.duplicateChargesPrevented, voided: payments.voided),
            reconciler: .init(completed: settled.completed, failed: settled.failed, unresolved: own?.unresolved ?? 0, sweeps: own?.sweeps ?? 0),
            rates: .init(acceptedPerSecond: rounded(processes.reduce(0) { $0 + $1.acceptedPerSecond }),
                         processedPerSecond: rounded(processes.reduce(0) { $0 + $1.processedPerSecond })),
            sync: .init(lanes: lanes.lanes, busy: lanes.busy, waiting: lanes.waiting),
            processes: processes,
            outbox: outboxQueue.map { .init(pending: $0.total, lagSeconds: rounded($0.oldestAgeSeconds)) })
    }
}
