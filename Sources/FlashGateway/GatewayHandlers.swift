import FlashPayments
import Foundation
import Synchronization

/// The gateway's operations, as `FlashGateway/openapi.yaml` describes them; the generated
/// server decodes each request (the order id in a path percent-decoded by the library, not by
/// hand) and encodes each answer.
struct GatewayHandlers: APIProtocol {
    let gateway: SimulatedPaymentGateway
    let ledger: any PaymentLedger
    let charging: InstrumentedPaymentGateway
    let requests: Requests

    /// `POST /charges` received by this process.
    final class Requests: Sendable {
        let count = Atomic<Int>(0)
    }

    func charge(_ input: Operations.Charge.Input) async throws -> Operations.Charge.Output {
        requests.count.add(1, ordering: .relaxed)
        let key = input.headers.idempotencyKey
        guard !key.isEmpty else { return .badRequest(.init(400, "the Idempotency-Key header is required")) }
        guard case let .json(charge) = input.body, Self.isOrderID(charge.orderId), charge.amount.isFinite, charge.amount >= 0 else {
            return .badRequest(.init(400, #"expected {"order_id": "…", "amount": number ≥ 0}"#))
        }
        // One charge per order: the ledger is keyed by the order id. A key naming another order
        // is a client bug, refused rather than charged.
        guard key == charge.orderId else {
            return .unprocessableContent(.init(422, "Idempotency-Key must be the order id ('\(charge.orderId)')"))
        }
        do {
            let outcome = try await charging.charge(orderID: charge.orderId, amount: charge.amount)
            return .ok(.init(body: .json(.init(orderID: charge.orderId, outcome: outcome))))
        } catch let error as TransientPaymentError {
            return .serviceUnavailable(.init(503, error.message))
        }
    }

    func getCharge(_ input: Operations.GetCharge.Input) async throws -> Operations.GetCharge.Output {
        let orderID = input.path.orderId
        guard Self.isOrderID(orderID) else { return .default(statusCode: 400, .init(400, Self.badOrderID)) }
        guard let outcome = try await ledger.outcome(for: orderID) else {
            return .notFound(.init(404, "no charge for order '\(orderID)'"))
        }
        return .ok(.init(body: .json(.init(orderID: orderID, outcome: outcome))))
    }

    func voidCharge(_ input: Operations.VoidCharge.Input) async throws -> Operations.VoidCharge.Output {
        let orderID = input.path.orderId
        guard Self.isOrderID(orderID) else { return .default(statusCode: 400, .init(400, Self.badOrderID)) }
        let outcome = try await gateway.finalOutcome(orderID: orderID)
        return .ok(.init(body: .json(.init(orderID: orderID, outcome: outcome))))
    }

    func getStats(_ input: Operations.GetStats.Input) async throws -> Operations.GetStats.Output {
        let stats = try await gateway.statistics()
        return .ok(.init(body: .json(.init(
            charges: stats.charges, requests: requests.count.load(ordering: .relaxed), duplicatesPrevented: stats.duplicateChargesPrevented,
            declines: stats.declines, voided: stats.voided))))
    }

    func getHealth(_ input: Operations.GetHealth.Input) async throws -> Operations.GetHealth.Output {
        .ok(.init(body: .json(.init(status: "ok"))))
    }

    static let badOrderID = "the order id must be 1 to 200 bytes of valid percent-encoded UTF-8, without control characters"

    /// 1 to 200 bytes of UTF-8 without control characters. (A path segment that is not valid
    /// percent-encoded UTF-8 reaches a handler as the empty string.)
    static func isOrderID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 200 && !id.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
    }
}
