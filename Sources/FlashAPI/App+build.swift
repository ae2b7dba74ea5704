import FlashTelemetry
import Hummingbird
import Logging
import ServiceLifecycle

/// Which routes a process serves.
public enum RouteSet: Sendable {
    /// The whole API (`flashsale serve`).
    case all
    /// `/health`, `/stats`, `/workers`, `/metrics` and `/openapi.json` only (a worker's side port).
    case monitoring
}

/// The API's routes, over the services' protocols. Admin routes are one group behind
/// ``AdminMiddleware``.
public func buildRouter(_ services: FlashServices, routes set: RouteSet = .all) -> Router<FlashRequestContext> {
    makeRouter(services, routes: set).router
}

/// The routes ``buildRouter(_:routes:)`` serves, as `METHOD /path/{param}` (the OpenAPI
/// document's spelling), without the 405 answers and `HEAD`.
public func routeList(_ services: FlashServices, routes set: RouteSet = .all) -> [String] {
    makeRouter(services, routes: set).routes
}

func makeRouter(_ services: FlashServices, routes set: RouteSet) -> (router: Router<FlashRequestContext>, routes: [String]) {
    let router = Router(context: FlashRequestContext.self)
    // Outermost first: the request id (on every log line and response), then metrics and the
    // access log (which see every answer, errors included), then errors as JSON.
    router.add(middleware: RequestIDMiddleware())
    let latency = services.acceptLatency
    router.add(middleware: HTTPMetricsMiddleware(factory: services.metrics.factory) { observation in
        latency.observe(route: observation.route, status: observation.status, duration: observation.duration)
    })
    router.add(middleware: JSONErrorMiddleware(admission: services.admission))
    let admin = router.group().add(middleware: AdminMiddleware(policy: services.admin))
    var routes = RouteTable(router: router, admin: admin)
    SystemController(reader: services.statsReader, membership: services.membership, startedAtMillis: services.startedAtMillis)
        .addRoutes(to: &routes)
    MetricsController(registry: services.metrics, reader: services.statsReader, catalog: services.catalog, workers: services.workers,
                      lanes: services.lanes, startedAtMillis: services.startedAtMillis)
        .addRoutes(to: &routes)
    if set == .all {
        OrdersController(store: services.store, gateway: services.gateway, lanes: services.lanes, syncTimeout: services.syncTimeout,
                         accepted: services.accepted, processed: services.processed, orderMetrics: services.orderMetrics,
                         membership: services.membership, admission: services.admission, soldOut: services.soldOut)
            .addRoutes(to: &routes)
        DashboardController(feed: services.dashboard).addRoutes(to: &routes)
        AdminController(paymentsQueue: services.store.paymentsQueue, deadLetterQueue: services.deadLetterQueue,
                        reconciler: services.reconciler, pauses: services.membership.pauses, settings: services.queueSettings)
            .addRoutes(to: &routes)
        DeadLettersController(store: services.store, deadLetterQueue: services.deadLetterQueue, reconciler: services.reconciler)
            .addRoutes(to: &routes)
        if let catalog = services.catalog {
            ProductsController(catalog: catalog, soldOut: services.soldOut).addRoutes(to: &routes)
            FlashSaleController(store: services.store, catalog: catalog, flashProduct: services.flashProduct, accepted: services.accepted,
                                orderMetrics: services.orderMetrics, admission: services.admission, soldOut: services.soldOut)
                .addRoutes(to: &routes)
        }
    }
    routes.finish()
    return (router, routes.registered)
}

/// The HTTP application: the router, served on `host:port`, running `services` (the backend,
/// the worker pool…) in the same service group; SIGTERM and SIGINT shut it down gracefully
/// (server first, then `services` in reverse order).
///
/// `limits` bound what clients' connections hold (``ConnectionLimits``): idle and slow ones are
/// closed, and connections past the cap are refused.
public func buildApplication(
    _ flash: FlashServices, routes set: RouteSet = .all, host: String, port: Int, limits: ConnectionLimits = ConnectionLimits(),
    services: [any Service] = [], logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) -> some ApplicationProtocol {
    Application(
        router: buildRouter(flash, routes: set),
        server: limits.server(gate: ConnectionGate(limit: limits.maxConnections, factory: flash.metrics.factory)),
        configuration: .init(address: .hostname(host, port: port), serverName: "flashsale", backlog: 1024),
        services: services,
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
        logger: logger)
}
