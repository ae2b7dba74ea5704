import FlashPayments
import Foundation
import HTTPTypes

/// A charge as the gateway's API carries it (`Charge` in `FlashGateway/openapi.yaml`), to and
/// from the outcome it stands for.
extension Components.Schemas.Charge {
    init(orderID: String, outcome: PaymentOutcome) {
        switch outcome {
        case let .approved(chargeID):
            self.init(orderId: orderID, chargeId: chargeID, status: .succeeded)
        case let .declined(reason):
            self.init(orderId: orderID, status: .declined, reason: reason)
        case .voided:
            self.init(orderId: orderID, status: .voided)
        }
    }

    /// `succeeded` → approved, `declined` → declined, `voided` → no charge was made, and none will be.
    var outcome: PaymentOutcome {
        switch status {
        case .succeeded: .approved(chargeID: chargeId ?? "")
        case .declined: .declined(reason: reason ?? "declined")
        case .voided: .voided
        }
    }
}

extension Components.Responses._Error {
    /// `{"error": {"code", "message"}}`, the code named after the status (`bad_request`, …).
    init(_ status: Int, _ message: String) {
        let code = HTTPStatusName.code(status)
        self.init(body: .json(.init(error: .init(code: code, message: message))))
    }
}

/// The snake-case reason phrase of a status (`bad_request`, `unprocessable_content`, …), the
/// `code` of the gateway's errors.
enum HTTPStatusName {
    static func code(_ status: HTTPResponse.Status) -> String {
        // A status made from a number alone has no reason phrase.
        let phrase = status.reasonPhrase.isEmpty ? (known[status.code] ?? "error") : status.reasonPhrase
        return phrase.lowercased().replacingOccurrences(of: " ", with: "_")
    }

    static func code(_ status: Int) -> String { code(HTTPResponse.Status(code: status)) }

    private static let known: [Int: String] = Dictionary(uniqueKeysWithValues: [
        HTTPResponse.Status.badRequest, .notFound, .methodNotAllowed, .contentTooLarge, .unprocessableContent, .tooManyRequests,
        .internalServerError, .serviceUnavailable,
    ].map { ($0.code, $0.reasonPhrase) })
}
