import Hummingbird
import Logging
import ServiceLifecycle

/// The API's routes, over the services' protocols.
public func buildRouter(_ services: FlashServices) -> Router<FlashRequestContext> {
    let router = Router(context: FlashRequestContext.self)
    router.add(middleware: JSONErrorMiddleware())
    var routes = RouteTable(router: router)
    OrdersController(services: services).addRoutes(to: &routes)
    SystemController(services: services).addRoutes(to: &routes)
    AdminController(services: services).addRoutes(to: &routes)
    if let catalog = services.catalog {
        ProductsController(services: services, catalog: catalog).addRoutes(to: &routes)
        FlashSaleController(services: services, catalog: catalog).addRoutes(to: &routes)
    }
    routes.finish()
    return router
}

/// The HTTP application: the router, served on `host:port`, running `services` (the worker pool)
/// in the same service group; SIGTERM and SIGINT shut it down gracefully (server first).
public func buildApplication(
    _ flash: FlashServices, host: String, port: Int, services: [any Service] = [], logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) -> some ApplicationProtocol {
    Application(
        router: buildRouter(flash),
        configuration: .init(address: .hostname(host, port: port), serverName: "flashsale", backlog: 1024),
        services: services,
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
        logger: logger)
}
