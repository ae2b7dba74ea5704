import FlashBackend
import FlashCore
import FlashOrders
import FlashTelemetry
import FlashWorkers
import Hummingbird
import Logging

/// `GET /metrics`: this process's counters and histograms (HTTP requests, orders accepted and
/// finished, payments), and gauges read at scrape time: the fleet's orders, queue, workers,
/// ledger, reconciler and outbox (the same figures as `/stats`), the stock of each product,
/// and this process's own workers and checkout lanes.
///
/// Fleet-wide gauges read the same from every process (they are the backend's counts): when
/// Prometheus scrapes several processes, take `max` of them, not `sum`. Per-process ones are
/// named for this process (`flashsale_process_…`) and sum.
struct MetricsController<Context: RequestContext> {
    let registry: MetricsRegistry
    let reader: SystemStatsReader
    let catalog: (any Catalog)?
    /// This process's worker pool, if it runs one.
    let workers: WorkerPool?
    let lanes: CheckoutLanes
    let startedAtMillis: Int64

    /// Products shown with their stock (the label set stays bounded).
    static var productLimit: Int { 100 }

    func addRoutes(to routes: inout RouteTable<Context>) {
        routes.on("/metrics", method: .get, use: metrics)
    }

    @Sendable func metrics(_ request: Request, context: Context) async throws -> Response {
        await refreshGauges(logger: context.logger)
        return Response(status: .ok, headers: [.contentType: MetricsRegistry.contentType],
                        body: .init(byteBuffer: ByteBuffer(bytes: registry.exposition())))
    }

    /// Sets every scrape-time gauge. A part of the figures that cannot be read in time keeps its
    /// gauges at their last values, and its dependency's `flashsale_dependency_up` says 0:
    /// `database` (orders, settlements, the fleet's heartbeats), `queue` (the payments queue:
    /// the database's own, or SQS) and `gateway` (the payment gateway's ledger). Each is read on
    /// its own, so a gateway that is down does not mark the database down.
    /// `flashsale_backend_up` is the database's.
    func refreshGauges(logger: Logger) async {
        let gauge = registry.gauge
        gauge("flashsale_process_start_time_seconds", [], "When this process started (Unix time).").set(Double(startedAtMillis) / 1000)
        gauge("flashsale_process_workers", [], "Payment workers in this process.").set(Double(workers?.workerCount ?? 0))
        gauge("flashsale_process_workers_busy", [], "This process's workers charging now.").set(Double(workers?.busy ?? 0))
        let waitingFor = workers?.waitingFor ?? []
        for dependency in ["database", "gateway"] {
            gauge("flashsale_process_workers_paused", [("dependency", dependency)],
                  "1 while this process's workers take no orders because the dependency is away (they resume when it answers).")
                .set(waitingFor.contains(dependency) ? 1.0 : 0.0)
        }
        gauge("flashsale_process_consuming_paused", [],
              "1 while this process's workers take no deliveries because consuming the payments queue is paused (POST /admin/queues/{name}/pause).")
            .set(workers?.isPaused == true ? 1.0 : 0.0)
        if let scaling = workers?.scaling {
            gauge("flashsale_workers_recommended", [],
                  "Workers the fleet needs now by Little's law (service time x (arrivals + waiting / target wait)), as this process's controller sees it.")
                .set(Double(scaling.fleetNeed))
            gauge("flashsale_worker_processes_recommended", [],
                  "Worker processes the fleet needs at this process's --max-workers each (for KEDA, HPA or ECS to scale on).")
                .set(Double(scaling.recommendedProcesses))
            gauge("flashsale_process_workers_target", [], "Workers this process's controller answered (what --workers auto runs; a fixed pool's own count otherwise).")
                .set(Double(scaling.workers))
            gauge("flashsale_arrival_rate", [], "Orders arriving per second, as the worker controller estimates it (smoothed).").set(scaling.arrivalRate)
            gauge("flashsale_process_payment_service_seconds", [], "Time per charge at the gateway, smoothed over this process's charges.")
                .set(scaling.serviceSeconds)
            gauge("flashsale_process_workers_gateway_ceiling", [],
                  "Most workers the payment gateway is taken to carry (its limit showed as slower charges or errors); +Inf while it shows none.")
                .set(scaling.gatewayCeiling.map(Double.init) ?? .infinity)
        }
        gauge("flashsale_process_sync_lanes", [], "This process's checkout lanes (POST /orders/sync).").set(Double(lanes.lanes))
        gauge("flashsale_process_sync_lanes_busy", [], "Checkout lanes charging now.").set(Double(lanes.busy))
        gauge("flashsale_process_sync_waiting", [], "Sync customers waiting for a lane.").set(Double(lanes.waiting))
        let stats = await reader.snapshot()
        let missing = stats.unavailable ?? [:]
        if !missing.isEmpty {
            logger.warning("metrics: some figures could not be read", metadata: ["unavailable": "\(missing.mapValues(\.reason))"])
        }
        var products: [Product]?
        if let catalog {
            do {
                products = try await withTimeout(SystemStatsReader.partLimit) { try await catalog.products(limit: Self.productLimit) }
            } catch {
                logger.warning("metrics: the products could not be read", metadata: ["error": "\(error)"])
            }
        }
        set(stats, products: products)
        let up = "1 when this scrape read the dependency's figures, 0 when it could not (its gauges then keep their last values)."
        let database = missing["orders"] == nil && missing["settlements"] == nil && missing["processes"] == nil
        for (dependency, isUp) in [("database", database), ("queue", missing["queue"] == nil), ("gateway", missing["payments"] == nil)] {
            gauge("flashsale_dependency_up", [("dependency", dependency)], up).set(isUp ? 1.0 : 0.0)
        }
        gauge("flashsale_backend_up", [], "1 when the last scrape read the database's figures, 0 when it could not.").set(database ? 1.0 : 0.0)
    }

    private func set(_ stats: SystemStats, products: [Product]?) {
        let gauge = registry.gauge
        let orders = "Orders by status (the fleet's)."
        for (status, count) in [("pending", stats.orders.pending), ("processing", stats.orders.processing),
                                ("completed", stats.orders.completed), ("failed", stats.orders.failed)] {
            gauge("flashsale_orders", [("status", status)], orders).set(Double(count))
        }
        if let admission = stats.admission {
            gauge("flashsale_admission_limit", [],
                  "Placements that may wait for the store now and still be answered within the admission deadline (more are refused on arrival); 0 while the store is stalled, +Inf before its groups were timed.")
                .set(admission.limit.map(Double.init) ?? .infinity)
            gauge("flashsale_admission_stalled", [], "1 while the store has had work and answered none of it for as long as the admission deadline.")
                .set(admission.stalled ? 1.0 : 0.0)
        }
        let queue = "Messages in the payments queue by state (approximate, as SQS's)."
        gauge("flashsale_queue_messages", [("state", "visible")], queue).set(Double(stats.queue.visible))
        gauge("flashsale_queue_messages", [("state", "in_flight")], queue).set(Double(stats.queue.inFlight))
        gauge("flashsale_queue_messages", [("state", "delayed")], queue).set(Double(stats.queue.delayed))
        gauge("flashsale_queue_dead_letter_messages", [], "Messages in the payments queue's dead-letter queue.").set(Double(stats.queue.deadLetter))
        gauge("flashsale_queue_oldest_message_age_seconds", [], "Age of the oldest message in the payments queue.").set(stats.queue.oldestAgeSeconds)
        gauge("flashsale_queue_consuming_paused", [], "1 while consuming the payments queue is paused for the whole fleet (orders are still accepted and wait).")
            .set(stats.queue.paused == true ? 1.0 : 0.0)
        gauge("flashsale_workers", [], "Payment workers of the live processes (the fleet's).").set(Double(stats.workers.count))
        gauge("flashsale_queue_backlog_per_worker", [], "Messages waiting in the payments queue per worker of the fleet (what KEDA's SQS scaler divides).")
            .set(Double(stats.queue.visible) / Double(max(1, stats.workers.count)))
        gauge("flashsale_workers_busy", [], "Payment workers charging now (the fleet's, from heartbeats).").set(Double(stats.workers.busy))
        gauge("flashsale_worker_processes", [], "Live processes running payment workers.").set(Double(stats.workers.processes))
        gauge("flashsale_processes", [], "Live flashsale processes sharing the backend.").set(Double(stats.processes.count))
        let ledger = "Payment ledger entries by outcome (the fleet's)."
        gauge("flashsale_ledger_charges", [("outcome", "approved")], ledger).set(Double(stats.payments.charges))
        gauge("flashsale_ledger_charges", [("outcome", "declined")], ledger).set(Double(stats.payments.declines))
        gauge("flashsale_ledger_charges", [("outcome", "voided")], ledger).set(Double(stats.payments.voided))
        gauge("flashsale_ledger_duplicate_charges_prevented", [], "Charges asked again for an order already decided, answered from the ledger.")
            .set(Double(stats.payments.duplicateChargesPrevented))
        let settled = "Orders the reconciler settled, by outcome (the fleet's)."
        gauge("flashsale_reconciler_settled_orders", [("status", "completed")], settled).set(Double(stats.reconciler.completed))
        gauge("flashsale_reconciler_settled_orders", [("status", "failed")], settled).set(Double(stats.reconciler.failed))
        gauge("flashsale_process_reconciler_unresolved_orders", [], "Orphans this process's reconciler could not settle yet.").set(Double(stats.reconciler.unresolved))
        gauge("flashsale_process_reconciler_sweeps", [], "Sweeps this process's reconciler made.").set(Double(stats.reconciler.sweeps))
        if let outbox = stats.outbox {
            gauge("flashsale_outbox_pending_messages", [], "Messages committed with their orders and not yet published to SQS/SNS.").set(Double(outbox.pending))
            gauge("flashsale_outbox_lag_seconds", [], "Age of the oldest unpublished message.").set(outbox.lagSeconds)
        }
        let units = "Units of each product by state: available, reserved (orders not yet paid), sold."
        for product in products ?? [] {
            gauge("flashsale_product_units", [("product", product.productID), ("state", "available")], units).set(Double(product.stock))
            gauge("flashsale_product_units", [("product", product.productID), ("state", "reserved")], units).set(Double(product.reserved))
            gauge("flashsale_product_units", [("product", product.productID), ("state", "sold")], units).set(Double(product.sold))
        }
    }
}
