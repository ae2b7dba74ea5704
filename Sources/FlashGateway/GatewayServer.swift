import FlashCore
import FlashPayments
import FlashTelemetry
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization

/// `flashsale gateway`: the payment provider as its own service, as a real one is. It runs the
/// simulator (latency, slots, declines) over a ledger that makes every charge idempotent by
/// order id, so the ledger holds at most one charge per order, whichever worker of whichever
/// process asks and however often.
///
/// - `POST /charges` `{"order_id","amount"}` with `Idempotency-Key` → `{"order_id","charge_id","status"}`
///   (`succeeded`, `declined`, or `voided` when the order's charge was voided first).
/// - `GET /charges/{order_id}` → the charge, or 404 when none was decided.
/// - `POST /charges/{order_id}/void` → voids the order's charge unless one was decided, and answers
///   the outcome that stands (what the reconciler asks before it settles an order).
/// - `GET /stats` → ``GatewayStats``; `GET /health`; `GET /metrics` (Prometheus: requests,
///   charges by outcome and their durations, the ledger's totals).
public final class GatewayServer: Sendable {
    public let gateway: SimulatedPaymentGateway
    public let ledger: any PaymentLedger
    /// This gateway's metrics (`GET /metrics`).
    public let metrics: MetricsRegistry
    private let charging: InstrumentedPaymentGateway
    private let requests = Atomic<Int>(0)

    public init(gateway: SimulatedPaymentGateway, ledger: any PaymentLedger) {
        self.gateway = gateway
        self.ledger = ledger
        let metrics = MetricsRegistry()
        self.metrics = metrics
        self.charging = InstrumentedPaymentGateway(gateway, factory: metrics.factory, names: InstrumentedPaymentGateway.gatewayNames)
    }

    /// The gateway's routes.
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: RequestIDMiddleware())
        router.add(middleware: HTTPMetricsMiddleware(factory: metrics.factory))
        router.add(middleware: GatewayErrorMiddleware())
        router.get("/health") { _, _ in Response.gatewayJSON(.ok, Data(#"{"status":"ok"}"#.utf8)) }
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
        router.post("/charges") { request, context in try await self.charge(request, context: context) }
        router.get("/charges/{order_id}") { _, context in
            let orderID = try Self.orderID(context)
            guard let outcome = try await self.ledger.outcome(for: orderID) else {
                throw GatewayError(.notFound, "no charge for order '\(orderID)'")
            }
            return try Response.gatewayJSON(.ok, JSONEncoder().encode(ChargeResponse(orderID: orderID, outcome: outcome)))
        }
        router.post("/charges/{order_id}/void") { _, context in
            let orderID = try Self.orderID(context)
            let outcome = try await self.gateway.finalOutcome(orderID: orderID)
            return try Response.gatewayJSON(.ok, JSONEncoder().encode(ChargeResponse(orderID: orderID, outcome: outcome)))
        }
        router.get("/stats") { _, _ in
            let stats = try await self.gateway.statistics()
            return try Response.gatewayJSON(.ok, JSONEncoder().encode(GatewayStats(
                charges: stats.charges, requests: self.requests.load(ordering: .relaxed), duplicatesPrevented: stats.duplicateChargesPrevented,
                declines: stats.declines, voided: stats.voided)))
        }
        return router
    }

    /// The path's order id, percent-decoded: the id the charge was made under.
    private static func orderID(_ context: BasicRequestContext) throws -> String {
        let raw = try context.parameters.require("order_id")
        do {
            return try PathSegment.decode(raw)
        } catch .notUTF8 {
            throw GatewayError(.badRequest, "the order id is not valid percent-encoded UTF-8")
        } catch .controlCharacter {
            throw GatewayError(.badRequest, "the order id must not hold control characters")
        }
    }

    private func charge(_ request: Request, context: BasicRequestContext) async throws -> Response {
        requests.add(1, ordering: .relaxed)
        guard let key = request.headers[HTTPField.Name("Idempotency-Key")!], !key.isEmpty else {
            throw GatewayError(.badRequest, "the Idempotency-Key header is required")
        }
        let body = try await request.body.collect(upTo: 64 * 1024)
        guard let charge = try? JSONDecoder().decode(ChargeRequest.self, from: Data(buffer: body)),
              !charge.orderID.isEmpty, charge.orderID.utf8.count <= 200, charge.amount.isFinite, charge.amount >= 0
        else { throw GatewayError(.badRequest, #"expected {"order_id": "…", "amount": number ≥ 0}"#) }
        // One charge per order: the ledger is keyed by the order id. A key naming another order
        // is a client bug, refused rather than charged.
        guard key == charge.orderID else {
            throw GatewayError(.unprocessableContent, "Idempotency-Key must be the order id ('\(charge.orderID)')")
        }
        do {
            let outcome = try await charging.charge(orderID: charge.orderID, amount: charge.amount)
            return try Response.gatewayJSON(.ok, JSONEncoder().encode(ChargeResponse(orderID: charge.orderID, outcome: outcome)))
        } catch let error as TransientPaymentError {
            throw GatewayError(.serviceUnavailable, error.message)
        }
    }

    /// The HTTP application, with the ledger's owner (if any) in its service group.
    public func application(host: String, port: Int, services: [any Service], logger: Logger,
                            onServerRunning: @escaping @Sendable (Int) async -> Void) -> some ApplicationProtocol {
        Application(router: router(), configuration: .init(address: .hostname(host, port: port), serverName: "flashsale-gateway"),
                    services: services, onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
                    logger: logger)
    }
}

/// An error of the gateway's API, answered as `{"error": {"code", "message"}}`.
struct GatewayError: Error {
    var status: HTTPResponse.Status
    var message: String

    init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }
}

struct GatewayErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as GatewayError {
            return Self.error(error.status, error.message)
        } catch let error as HTTPError {
            return Self.error(error.status, error.body ?? error.status.reasonPhrase)
        } catch {
            context.logger.error("gateway request failed", metadata: ["error": "\(error)"])
            return Self.error(.internalServerError, "the gateway could not complete the request")
        }
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        let code = status.reasonPhrase.lowercased().replacingOccurrences(of: " ", with: "_")
        return Response.gatewayJSON(status, Data(#"{"error":{"code":\#(JSONText.quoted(code)),"message":\#(JSONText.quoted(message))}}"#.utf8))
    }
}

extension Response {
    static func gatewayJSON(_ status: HTTPResponse.Status, _ body: Data) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}
