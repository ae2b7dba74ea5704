import FlashCore
import FlashOrders

/// Orders as JSON, written by hand: the accept path answers 20k+ times a second, and
/// JSONEncoder's reflection-driven encoding costs more than the rest of the reply.
enum OrderJSON {
    /// The full order, as `GET /orders/{id}` and the sync endpoint answer it.
    static func order(_ order: Order, queuePosition: Int? = nil, estimatedCompletionMillis: Int64? = nil) -> String {
        var out = "{"
        out += #""order_id":\#(JSONText.quoted(order.id)),"#
        out += #""customer_id":\#(JSONText.quoted(order.customerID)),"#
        out += #""status":"\#(order.status.rawValue)","#
        out += #""channel":"\#(order.channel.rawValue)","#
        out += #""items":\#(items(order.items)),"#
        out += #""total":\#(JSONText.number(order.total)),"#
        out += #""attempts":\#(order.attempts),"#
        out += #""failure_reason":\#(order.failureReason.map(JSONText.quoted) ?? "null"),"#
        out += #""message_id":\#(order.messageID.map(JSONText.quoted) ?? "null"),"#
        out += #""created_at":\#(time(order.createdAt)),"#
        out += #""updated_at":\#(time(order.updatedAt)),"#
        out += #""processing_at":\#(time(order.processingAt)),"#
        out += #""completed_at":\#(time(order.status == .completed ? order.finishedAt : nil)),"#
        out += #""failed_at":\#(time(order.status == .failed ? order.finishedAt : nil))"#
        if order.status == .pending {
            out += #","queue_position":\#(queuePosition.map(String.init) ?? "null")"#
            out += #","estimated_completion":\#(time(estimatedCompletionMillis))"#
        }
        return out + "}"
    }

    /// The 202 of the async endpoint.
    static func accepted(orderID: String, messageID: String?, status: OrderStatus) -> String {
        // Every accepted order's reply: appended into one reserved string (callgrind, issue 13).
        var out = #"{"order_id":"#
        out.reserveCapacity(128)
        JSONText.appendQuoted(orderID, to: &out)
        out.append(#","message_id":"#)
        if let messageID { JSONText.appendQuoted(messageID, to: &out) } else { out.append("null") }
        out.append(#","status":""#)
        out.append(status.rawValue)
        out.append(#""}"#)
        return out
    }

    static func items(_ items: [OrderItem]) -> String {
        "[" + items.map { item in
            #"{"product_id":\#(JSONText.quoted(item.productID)),"quantity":\#(item.quantity),"price":\#(item.price.map(JSONText.number) ?? "null")}"#
        }.joined(separator: ",") + "]"
    }

    static func time(_ millis: Int64?) -> String {
        guard let millis else { return "null" }
        return "\"" + WallClock.iso8601(millis: millis) + "\""
    }
}
