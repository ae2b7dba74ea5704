import FlashCore

/// The message a queued order sends to the payment workers, on the `orders` topic:
/// `{"order_id": "…", "customer_id": "…", "total": 99.98}`. One type for the producer (the order
/// store) and the consumers (the workers, the dead-letter handler).
///
/// The order id is what counts: a consumer reads the order itself (its status, its total) from
/// the store, so a message can never charge a different amount than the stored order says.
public struct PaymentMessage: Sendable, Hashable {
    public var orderID: String
    public var customerID: String
    public var total: Double

    public init(orderID: String, customerID: String, total: Double) {
        self.orderID = orderID
        self.customerID = customerID
        self.total = total
    }

    /// The JSON body, written by hand (it is on the accept path).
    public var body: String {
        var out = #"{"order_id":"#
        out.reserveCapacity(96 + orderID.utf8.count + customerID.utf8.count)
        JSONText.appendQuoted(orderID, to: &out)
        out.append(#","customer_id":"#)
        JSONText.appendQuoted(customerID, to: &out)
        out.append(#","total":"#)
        out.append(JSONText.number(total))
        out.append("}")
        return out
    }

    /// The order id of a message body, or nil if the body is not a payment message.
    public static func orderID(in body: String) -> String? {
        guard let object = (try? JSONValue.parse(Array(body.utf8)))?.object,
              case let .string(id)? = object["order_id"], !id.isEmpty
        else { return nil }
        return id
    }
}
