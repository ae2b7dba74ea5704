import FlashCore

/// The inventory gate's rules, once for every backend.
///
/// A backend runs them inside the transaction that stores the order (see ``OrderStore``): for
/// each product of ``wantedUnits(_:)`` it reads the product's ``StockLevel`` so that no other
/// transaction can change it before commit (SQLite: its single writer; PostgreSQL: a row lock),
/// asks ``decide(productID:quantity:level:strictCatalog:)``, and applies the answer. What is
/// reserved is kept with the order (``Reservation``) and closed by ``closing(_:sold:)``.
public enum InventoryRules {
    /// Units wanted per product, in the order products first appear (one product may be named
    /// by several items).
    public static func wantedUnits(_ items: [OrderItem]) -> [ReservedUnits] {
        var wanted: [ReservedUnits] = []
        for item in items {
            if let index = wanted.firstIndex(where: { $0.productID == item.productID }) {
                wanted[index].quantity += item.quantity
            } else {
                wanted.append(ReservedUnits(productID: item.productID, quantity: item.quantity))
            }
        }
        return wanted
    }

    /// Whether `quantity` units of `productID` may be reserved for a customer: `true` to reserve
    /// (take them from stock; count them against the limit when the product has one), `false`
    /// when the product is not in the catalog and need not be (nothing to reserve). Throws
    /// ``InventoryRefusal`` otherwise; the caller then rolls back the whole placement.
    public static func decide(productID: String, quantity: Int, level: StockLevel?, strictCatalog: Bool) throws -> Bool {
        guard let level else {
            if strictCatalog { throw InventoryRefusal.unknownProduct(productID: productID) }
            return false
        }
        if let limit = level.perCustomerLimit, level.boughtByCustomer + quantity > limit {
            throw InventoryRefusal.limitExceeded(productID: productID, limit: limit)
        }
        guard level.stock >= quantity else { throw InventoryRefusal.soldOut(productID: productID) }
        return true
    }

    /// What closing a reservation does to each product: a completed order's units move from
    /// reserved to sold; a failed order's go back to stock and no longer count against the
    /// customer's limit.
    public static func closing(_ reservation: Reservation, sold: Bool) -> [StockChange] {
        reservation.units.map { units in
            sold ? StockChange(productID: units.productID, stock: 0, reserved: -units.quantity, sold: units.quantity, customerBought: 0)
                : StockChange(productID: units.productID, stock: units.quantity, reserved: -units.quantity, sold: 0, customerBought: -units.quantity)
        }
    }
}

/// One product as the inventory gate sees it for one customer, read inside the placing transaction.
public struct StockLevel: Sendable, Hashable {
    /// Units available now.
    public var stock: Int
    public var perCustomerLimit: Int?
    /// The catalog price; when set, it is the price charged.
    public var price: Double?
    /// Units of this product the customer holds in open or completed orders (0 without a limit).
    public var boughtByCustomer: Int

    public init(stock: Int, perCustomerLimit: Int?, price: Double?, boughtByCustomer: Int) {
        self.stock = stock
        self.perCustomerLimit = perCustomerLimit
        self.price = price
        self.boughtByCustomer = boughtByCustomer
    }
}

/// Units of one product.
public struct ReservedUnits: Sendable, Hashable {
    public var productID: String
    public var quantity: Int

    public init(productID: String, quantity: Int) {
        self.productID = productID
        self.quantity = quantity
    }
}

/// A change to one product's counters (and the customer's count against its limit).
public struct StockChange: Sendable, Hashable {
    public var productID: String
    public var stock: Int
    public var reserved: Int
    public var sold: Int
    public var customerBought: Int
}

/// The units an order holds, kept with the order until it is settled. Stored as a small JSON
/// object (`{"product":units}`), the same on every backend.
public struct Reservation: Sendable, Hashable {
    public var units: [ReservedUnits]

    public init(units: [ReservedUnits] = []) {
        self.units = units
    }

    public var isEmpty: Bool { units.isEmpty }

    /// The stored form; nil when nothing is reserved.
    public var encoded: String? {
        guard !units.isEmpty else { return nil }
        return "{" + units.map { "\(JSONText.quoted($0.productID)):\($0.quantity)" }.joined(separator: ",") + "}"
    }

    /// Reads the stored form (units sorted by product, so settling takes rows in one order).
    public init(encoded text: String?) {
        guard let text, let members = (try? JSONValue.parse(Array(text.utf8)))?.object else {
            self.init()
            return
        }
        self.init(units: members.compactMap { key, value in
            if case let .number(_, integer?) = value { return ReservedUnits(productID: key, quantity: Int(integer)) }
            return nil
        }.sorted { $0.productID < $1.productID })
    }
}

extension NewOrder {
    /// The order as charged: a catalog price is the price; the client's only fills in where the
    /// catalog has none.
    public func priced(by catalogPrices: [String: Double]) -> NewOrder {
        var order = self
        for index in order.items.indices {
            if let price = catalogPrices[order.items[index].productID] { order.items[index].price = price }
        }
        return order
    }

    /// The fingerprint a repeatable request keeps (one with an idempotency key or a client order
    /// id), nil otherwise: none is built on the common path.
    public var storedFingerprint: String? {
        idempotencyKey != nil || idChosenByClient ? fingerprint : nil
    }
}

/// The order lifecycle's transitions, once for every backend. Each returns the order as it must
/// be stored, or nil when the transition does not apply (the store then leaves the row alone).
extension Order {
    /// A new order as placed: `pending` for the queue, `processing` (its first attempt) for the
    /// sync endpoint.
    public static func placed(_ order: NewOrder, queued: Bool, messageID: String?, now: Int64) -> Order {
        Order(id: order.id, customerID: order.customerID, items: order.items, total: order.total,
              status: queued ? .pending : .processing, channel: order.channel, attempts: queued ? 0 : 1,
              failureReason: nil, createdAt: now, updatedAt: now, processingAt: queued ? nil : now, finishedAt: nil,
              messageID: messageID)
    }

    /// A delivery of its message is being tried: `processing`, one attempt more. Nil for a
    /// finished order (a late duplicate delivery changes nothing).
    public func startingAttempt(now: Int64) -> Order? {
        guard !status.isTerminal else { return nil }
        var order = self
        order.status = .processing
        order.attempts += 1
        order.updatedAt = now
        order.processingAt = processingAt ?? now
        return order
    }

    /// A delivery given back untried: the attempt is uncounted, and an order with no attempt
    /// left is `pending` again. Nil unless the order is processing with an attempt to give back.
    public func returningUntried(now: Int64) -> Order? {
        guard status == .processing, attempts > 0 else { return nil }
        var order = self
        order.attempts -= 1
        order.updatedAt = now
        if order.attempts == 0 {
            order.status = .pending
            order.processingAt = nil
        }
        return order
    }

    /// The order finished with `result`. Nil when it already was (the first result stands).
    public func finishing(_ result: OrderResult, now: Int64) -> Order? {
        guard !status.isTerminal else { return nil }
        var order = self
        switch result {
        case .completed:
            order.status = .completed
        case let .failed(reason):
            order.status = .failed
            order.failureReason = reason
        }
        order.updatedAt = now
        order.finishedAt = now
        return order
    }
}

extension OrderCounts {
    /// The stored counter of each status (a backend keeps these in the transactions that move
    /// orders, so counts are exact for every process and cost no scan).
    public static func counterName(_ status: OrderStatus) -> String { "orders.\(status.rawValue)" }

    /// Counts from the stored counters of processing, completed and failed, and the number of
    /// orders ever placed: pending has no counter of its own (the accept path writes none), it
    /// is the rest.
    public init(counters: [String: Int], placed: Int) {
        self.init()
        for status in [OrderStatus.processing, .completed, .failed] { self[status] = counters[Self.counterName(status)] ?? 0 }
        pending = placed - processing - completed - failed
    }
}
