import FlashCore
import FlashPayments
import FlashTelemetry
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import OpenAPIHummingbird
import OpenAPIRuntime
import ServiceLifecycle

/// `flashsale gateway`: the payment provider as its own service, as a real one is. It runs the
/// simulator (latency, slots, declines) over a ledger that makes every charge idempotent by
/// order id, so the ledger holds at most one charge per order, whichever worker of whichever
/// process asks and however often.
///
/// Its API is `FlashGateway/openapi.yaml` (charge, look up, void, stats, health), served by
/// the server stubs generated from it (``GatewayHandlers``); `GET /metrics` (Prometheus:
/// requests, charges by outcome and their durations, the ledger's totals) is served beside it.
public final class GatewayServer: Sendable {
    public let gateway: SimulatedPaymentGateway
    public let ledger: any PaymentLedger
    /// This gateway's metrics (`GET /metrics`).
    public let metrics: MetricsRegistry
    private let handlers: GatewayHandlers

    /// The secret callers of the charge operations must send (`Authorization: Bearer …`).
    let token: String

    /// The largest request body accepted (a charge is under 300 bytes).
    static let maxBody = 64 * 1024

    /// - Parameter token: the secret a caller must send to charge, look up or void (shared with
    ///   the fleet through the environment or a file); `/health`, `/stats` and `/metrics` are open.
    public init(gateway: SimulatedPaymentGateway, ledger: any PaymentLedger, token: String) {
        precondition(!token.isEmpty, "the gateway's secret cannot be empty")
        self.token = token
        self.gateway = gateway
        self.ledger = ledger
        let metrics = MetricsRegistry()
        self.metrics = metrics
        handlers = GatewayHandlers(
            gateway: gateway, ledger: ledger,
            charging: InstrumentedPaymentGateway(gateway, factory: metrics.factory, names: InstrumentedPaymentGateway.gatewayNames),
            requests: .init())
    }

    /// The gateway's routes.
    public func router() throws -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: RequestIDMiddleware())
        router.add(middleware: HTTPMetricsMiddleware(factory: metrics.factory))
        router.add(middleware: GatewayErrorMiddleware())
        router.add(middleware: GatewayAuthMiddleware(token: token))
        router.get("/metrics") { _, context in
            do {
                let stats = try await self.gateway.statistics()
                let gauge = self.metrics.gauge
                let ledger = "The ledger's charges by outcome."
                gauge("flashsale_ledger_charges", [("outcome", "approved")], ledger).set(Double(stats.charges))
                gauge("flashsale_ledger_charges", [("outcome", "declined")], ledger).set(Double(stats.declines))
                gauge("flashsale_ledger_charges", [("outcome", "voided")], ledger).set(Double(stats.voided))
                gauge("flashsale_ledger_duplicate_charges_prevented", [], "Charges asked again for an order already decided.")
                    .set(Double(stats.duplicateChargesPrevented))
            } catch {
                context.logger.warning("metrics: the ledger's figures could not be read", metadata: ["error": "\(error)"])
            }
            return Response(status: .ok, headers: [.contentType: MetricsRegistry.contentType],
                            body: .init(byteBuffer: ByteBuffer(bytes: self.metrics.exposition())))
        }
        try handlers.registerHandlers(on: router)
        return router
    }

    /// The HTTP application, with the ledger's owner (if any) in its service group.
    /// `limits` bound what callers' connections hold, as on the API (``ConnectionLimits``).
    public func application(host: String, port: Int, limits: ConnectionLimits = ConnectionLimits(), services: [any Service], logger: Logger,
                            onServerRunning: @escaping @Sendable (Int) async -> Void) throws -> some ApplicationProtocol {
        Application(router: try router(),
                    server: limits.server(gate: ConnectionGate(limit: limits.maxConnections, factory: metrics.factory)),
                    configuration: .init(address: .hostname(host, port: port), serverName: "flashsale-gateway", backlog: 1024),
                    services: services, onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
                    logger: logger)
    }
}

/// Answers every error as `{"error": {"code", "message"}}`, as the API's own answers are.
struct GatewayErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            // Collected here, within a bound: the generated server would read any length.
            var request = request
            _ = try await request.collectBody(upTo: GatewayServer.maxBody)
            return try await next(request, context)
        } catch let error as ServerError where error.operationInput == nil {
            // The request could not be read as the operation's input (a header missing, a body
            // that is not the document's JSON): the client's error.
            return Self.error(.badRequest, "the request does not match the gateway's API: \(error.causeDescription)")
        } catch let error as ServerError {
            context.logger.error("gateway request failed", metadata: ["error": "\(error.underlyingError)"])
            return Self.error(.internalServerError, "the gateway could not complete the request")
        } catch is NIOTooManyBytesError {
            return Self.error(.contentTooLarge, "the request body is over \(GatewayServer.maxBody) bytes")
        } catch let error as HTTPError {
            return Self.error(error.status, error.body ?? error.status.reasonPhrase)
        } catch {
            context.logger.error("gateway request failed", metadata: ["error": "\(error)"])
            return Self.error(.internalServerError, "the gateway could not complete the request")
        }
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        let code = HTTPStatusName.code(status)
        return Response.gatewayJSON(status, Data(#"{"error":{"code":\#(JSONText.quoted(code)),"message":\#(JSONText.quoted(message))}}"#.utf8))
    }
}

/// Only callers that hold the gateway's secret may charge, look up or void: anyone who could
/// reach the port could otherwise void an order's charge, or charge it. Every path needs it but
/// the open ones (`/health`, `/stats`, `/metrics`), compared by their non-empty segments as the
/// router matches them (so `//charges` is not a way around it).
struct GatewayAuthMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let token: String
    static let open: Set<String> = ["health", "stats", "metrics"]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let segments = request.uri.path.split(separator: "/", omittingEmptySubsequences: true)
        if segments.count == 1, Self.open.contains(String(segments[0])) { return try await next(request, context) }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            var response = GatewayErrorMiddleware.error(.unauthorized, "charges need 'Authorization: Bearer <gateway token>' (FLASHSALE_GATEWAY_TOKEN, or the file flashsale.gateway-token)")
            response.headers[.wwwAuthenticate] = "Bearer"
            return response
        }
        guard SecretComparison.equal(String(header.dropFirst("Bearer ".count)), token) else {
            return GatewayErrorMiddleware.error(.forbidden, "the gateway token is not valid")
        }
        return try await next(request, context)
    }
}

extension Response {
    static func gatewayJSON(_ status: HTTPResponse.Status, _ body: Data) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}
