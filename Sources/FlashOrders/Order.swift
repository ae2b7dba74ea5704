import FlashCore

/// Where an order is in its life: `pending → processing → completed | failed`.
public enum OrderStatus: String, Sendable, Hashable, Codable, CaseIterable {
    case pending, processing, completed, failed

    /// Completed or failed: nothing more will happen to the order.
    public var isTerminal: Bool { self == .completed || self == .failed }
}

/// Which endpoint took the order.
public enum OrderChannel: String, Sendable, Hashable, Codable {
    /// `POST /orders/sync`: charged while the customer waits.
    case sync
    /// `POST /orders/async`: queued for the workers.
    case async
    /// `POST /buy`: the flash-sale engine's endpoint, queued like async.
    case buy
}

/// One line of an order.
public struct OrderItem: Sendable, Hashable, Codable {
    public var productID: String
    public var quantity: Int
    /// Unit price, if the client sent one.
    public var price: Double?

    public init(productID: String, quantity: Int, price: Double?) {
        self.productID = productID
        self.quantity = quantity
        self.price = price
    }

    enum CodingKeys: String, CodingKey {
        case productID = "product_id", quantity, price
    }
}

/// An order to store: what a validated request becomes.
public struct NewOrder: Sendable, Hashable {
    public var id: String
    public var customerID: String
    public var items: [OrderItem]
    public var channel: OrderChannel
    /// A client's `Idempotency-Key` header: the same key again returns this order.
    public var idempotencyKey: String?
    /// Refuse items whose product is not in the catalog, whatever the store's setting
    /// (`POST /buy`: no stock means sold out).
    public var requiresCatalog: Bool
    /// The client chose `id` (its `order_id`): a repeat must return the stored order. A
    /// server-made time-ordered id cannot repeat, so the store skips that look-up.
    public var idChosenByClient: Bool
    /// The admission deadline: if the store cannot begin the placement's transaction by then
    /// (it is slow or stalled, and work waits behind it), the order is refused with
    /// `Overloaded` and never stored. Nil waits as long as the store's own limits allow.
    public var admitBy: ContinuousClock.Instant?

    public init(id: String, customerID: String, items: [OrderItem], channel: OrderChannel, idempotencyKey: String?,
                requiresCatalog: Bool = false, idChosenByClient: Bool = true, admitBy: ContinuousClock.Instant? = nil) {
        self.admitBy = admitBy
        self.id = id
        self.customerID = customerID
        self.items = items
        self.channel = channel
        self.idempotencyKey = idempotencyKey
        self.requiresCatalog = requiresCatalog
        self.idChosenByClient = idChosenByClient
    }

    /// What makes two requests "the same request" for idempotency: the endpoint, the client's
    /// order id (if it chose one), the customer and the items as sent (before catalog prices
    /// fill in). Field order and spacing of the JSON body do not matter.
    public var fingerprint: String {
        var text = channel.rawValue + "|" + (idChosenByClient ? JSONText.quoted(id) : "") + "|" + JSONText.quoted(customerID)
        for item in items {
            text += "|" + JSONText.quoted(item.productID) + "*" + String(item.quantity) + "@" + (item.price.map { String($0) } ?? "-")
        }
        return text
    }

    /// Sum of quantity × price, rounded to cents; items without a price count as free.
    public var total: Double {
        let cents = items.reduce(0.0) { $0 + Double($1.quantity) * ($1.price ?? 0) * 100 }
        return cents.rounded() / 100
    }
}

/// A stored order.
public struct Order: Sendable, Hashable {
    public var id: String
    public var customerID: String
    public var items: [OrderItem]
    public var total: Double
    public var status: OrderStatus
    public var channel: OrderChannel
    /// Payment attempts started (deliveries of its message, or 1 for a sync order).
    public var attempts: Int
    public var failureReason: String?
    /// Unix milliseconds.
    public var createdAt: Int64
    public var updatedAt: Int64
    public var processingAt: Int64?
    public var finishedAt: Int64?
    /// The id of the queued payment message (async orders).
    public var messageID: String?
    /// When the dead-letter handler (or the reconciler's sweep) first found its message in the
    /// dead-letter queue (Unix ms); nil when it is not there, or a redrive sent it back. The
    /// dead-letter hold counts from here.
    public var deadLetteredAt: Int64?

    public init(id: String, customerID: String, items: [OrderItem], total: Double, status: OrderStatus,
                channel: OrderChannel, attempts: Int, failureReason: String?, createdAt: Int64, updatedAt: Int64,
                processingAt: Int64?, finishedAt: Int64?, messageID: String?, deadLetteredAt: Int64? = nil) {
        self.deadLetteredAt = deadLetteredAt
        self.id = id
        self.customerID = customerID
        self.items = items
        self.total = total
        self.status = status
        self.channel = channel
        self.attempts = attempts
        self.failureReason = failureReason
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.processingAt = processingAt
        self.finishedAt = finishedAt
        self.messageID = messageID
    }
}

/// Orders by status.
public struct OrderCounts: Sendable, Hashable, Codable {
    public var pending = 0
    public var processing = 0
    public var completed = 0
    public var failed = 0

    public init(pending: Int = 0, processing: Int = 0, completed: Int = 0, failed: Int = 0) {
        self.pending = pending
        self.processing = processing
        self.completed = completed
        self.failed = failed
    }

    public var total: Int { pending + processing + completed + failed }

    public subscript(status: OrderStatus) -> Int {
        get {
            switch status {
            case .pending: return pending
            case .processing: return processing
            case .completed: return completed
            case .failed: return failed
            }
        }
        set {
            switch status {
            case .pending: pending = newValue
            case .processing: processing = newValue
            case .completed: completed = newValue
            case .failed: failed = newValue
            }
        }
    }
}

extension OrderItem {
    /// The stored form of an order's items: a JSON array, as the API shows them.
    public static func encodeList(_ items: [OrderItem]) -> String {
        // Appended into one reserved string: it runs on the SQLite writer for every order, and
        // the map/join/interpolation form cost three times as much (callgrind, issue 13).
        var out = "["
        out.reserveCapacity(2 + items.count * 64)
        for (index, item) in items.enumerated() {
            out.append(index == 0 ? #"{"product_id":"# : #",{"product_id":"#)
            JSONText.appendQuoted(item.productID, to: &out)
            out.append(#","quantity":"#)
            out.append(String(item.quantity))
            if let price = item.price {
                out.append(#","price":"#)
                out.append(JSONText.number(price))
            }
            out.append("}")
        }
        out.append("]")
        return out
    }

    /// Items from their stored form (``encodeList(_:)``); unreadable entries are skipped.
    public static func decodeList(_ text: String) -> [OrderItem] {
        guard case let .array(list)? = try? JSONValue.parse(Array(text.utf8)) else { return [] }
        return list.compactMap { value in
            guard let object = value.object, case let .string(product)? = object["product_id"],
                  case let .number(_, quantity?)? = object["quantity"] else { return nil }
            var price: Double?
            if case let .number(value, _)? = object["price"] { price = value }
            return OrderItem(productID: product, quantity: Int(quantity), price: price)
        }
    }
}
