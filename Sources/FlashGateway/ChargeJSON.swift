import FlashPayments
import Foundation

/// `POST /charges` body.
struct ChargeRequest: Codable, Sendable {
    var orderID: String
    var amount: Double

    enum CodingKeys: String, CodingKey {
        case orderID = "order_id"
        case amount
    }
}

/// A charge as the gateway answers it (`POST /charges`, `GET /charges/{order_id}`,
/// `POST /charges/{order_id}/void`).
struct ChargeResponse: Codable, Sendable {
    var orderID: String
    var chargeID: String?
    /// `succeeded`, `declined`, or `voided` (no charge was made, and none will be).
    var status: String
    var reason: String?

    enum CodingKeys: String, CodingKey {
        case orderID = "order_id"
        case chargeID = "charge_id"
        case status, reason
    }

    init(orderID: String, outcome: PaymentOutcome) {
        self.orderID = orderID
        switch outcome {
        case let .approved(chargeID):
            self.chargeID = chargeID
            status = "succeeded"
        case let .declined(reason):
            status = "declined"
            self.reason = reason
        case .voided:
            status = "voided"
        }
    }

    var outcome: PaymentOutcome? {
        switch status {
        case "succeeded": .approved(chargeID: chargeID ?? "")
        case "declined": .declined(reason: reason ?? "declined")
        case "voided": .voided
        default: nil
        }
    }
}

/// `GET /stats` of the gateway.
public struct GatewayStats: Codable, Sendable, Hashable {
    /// Distinct orders charged (approved), each once.
    public var charges: Int
    /// `POST /charges` requests received by this gateway process.
    public var requests: Int
    /// Charge requests for an order already decided: answered from the ledger, nothing taken.
    public var duplicatesPrevented: Int
    public var declines: Int
    /// Orders whose charge was voided before any was made.
    public var voided: Int

    enum CodingKeys: String, CodingKey {
        case charges, requests, declines, voided
        case duplicatesPrevented = "duplicates_prevented"
    }
}
