import FlashCore
import Hummingbird

/// `GET /health` and `GET /stats`: the figures the monitor, the lab and the dashboard read.
struct SystemController<Context: RequestContext> {
    let services: FlashServices

    func addRoutes(to routes: inout RouteTable<Context>) {
        routes.on("/health", method: .get, use: health)
        routes.on("/stats", method: .get, use: stats)
    }

    @Sendable func health(_ request: Request, context: Context) async throws -> Response {
        let uptime = Double(WallClock.nowMillis() - services.startedAtMillis) / 1000
        return Response.json(.ok, #"{"status":"healthy","uptime_seconds":\#(JSONText.number((uptime * 10).rounded() / 10)),"workers":\#(services.workers?.workerCount ?? 0)}"#)
    }

    /// The contract: orders, queue, workers, payments, rates (names fixed; outside tools read them).
    @Sendable func stats(_ request: Request, context: Context) async throws -> Response {
        let orders = try await services.store.counts()
        let queue = try await services.paymentsQueue.statistics()
        let payments = try await services.gateway.statistics()
        let settled = try await services.store.settlementCounts()
        let reconciler = services.reconciler?.statistics
        let workers = services.workers
        let rate = { (value: Double) in JSONText.number((value * 100).rounded() / 100) }
        let body = """
            {"orders":{"total":\(orders.total),"pending":\(orders.pending),"processing":\(orders.processing),\
            "completed":\(orders.completed),"failed":\(orders.failed)},\
            "queue":{"visible":\(queue.visible),"in_flight":\(queue.inFlight),"delayed":\(queue.delayed),\
            "dead_letter":\(queue.deadLettered),"oldest_age_seconds":\(rate(queue.oldestAgeSeconds))},\
            "workers":{"count":\(workers?.workerCount ?? 0),"busy":\(workers?.busy ?? 0)},\
            "payments":{"charges":\(payments.charges),"declines":\(payments.declines),\
            "duplicate_charges_prevented":\(payments.duplicateChargesPrevented),"voided":\(payments.voided)},\
            "reconciler":{"completed":\(settled.completed),"failed":\(settled.failed),\
            "unresolved":\(reconciler?.unresolved ?? 0),"sweeps":\(reconciler?.sweeps ?? 0)},\
            "rates":{"accepted_per_second":\(rate(services.accepted.perSecond)),\
            "processed_per_second":\(rate(services.processed.perSecond))},\
            "sync":{"lanes":\(services.lanes.lanes),"busy":\(services.lanes.busy),"waiting":\(services.lanes.waiting)}}
            """
        return Response.json(.ok, body)
    }
}
