import Hummingbird
import Logging
import ServiceLifecycle

/// Which routes a process serves.
public enum RouteSet: Sendable {
    /// The whole API (`flashsale serve`).
    case all
    /// `/health`, `/stats` and `/workers` only (a worker's side port).
    case monitoring
}

/// The API's routes, over the services' protocols. Admin routes are one group behind
/// ``AdminMiddleware``.
public func buildRouter(_ services: FlashServices, routes set: RouteSet = .all) -> Router<FlashRequestContext> {
    let router = Router(context: FlashRequestContext.self)
    router.add(middleware: JSONErrorMiddleware())
    let admin = router.group().add(middleware: AdminMiddleware(policy: services.admin))
    var routes = RouteTable(router: router, admin: admin)
    SystemController(store: services.store, gateway: services.gateway, deadLetterQueue: services.deadLetterQueue,
                     membership: services.membership, reconciler: services.reconciler, lanes: services.lanes,
                     startedAtMillis: services.startedAtMillis, outbox: services.outbox)
        .addRoutes(to: &routes)
    if set == .all {
        OrdersController(store: services.store, gateway: services.gateway, lanes: services.lanes, syncTimeout: services.syncTimeout,
                         accepted: services.accepted, processed: services.processed, membership: services.membership)
            .addRoutes(to: &routes)
        AdminController(paymentsQueue: services.store.paymentsQueue, deadLetterQueue: services.deadLetterQueue,
                        reconciler: services.reconciler)
            .addRoutes(to: &routes)
        if let catalog = services.catalog {
            ProductsController(catalog: catalog).addRoutes(to: &routes)
            FlashSaleController(store: services.store, catalog: catalog, flashProduct: services.flashProduct, accepted: services.accepted)
                .addRoutes(to: &routes)
        }
    }
    routes.finish()
    return router
}

/// The HTTP application: the router, served on `host:port`, running `services` (the backend,
/// the worker pool…) in the same service group; SIGTERM and SIGINT shut it down gracefully
/// (server first, then `services` in reverse order).
public func buildApplication(
    _ flash: FlashServices, routes set: RouteSet = .all, host: String, port: Int, services: [any Service] = [], logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) -> some ApplicationProtocol {
    Application(
        router: buildRouter(flash, routes: set),
        configuration: .init(address: .hostname(host, port: port), serverName: "flashsale", backlog: 1024),
        services: services,
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
        logger: logger)
}
