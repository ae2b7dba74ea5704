import FlashQueue

/// The result of placing an order.
public struct Placement: Sendable, Hashable {
    /// The stored order (the earlier one, for a repeated idempotency key).
    public var order: Order
    /// The payment message's id, for queued orders.
    public var messageID: String?
    /// False when the idempotency key (or client order id) named an order stored before.
    public var created: Bool

    public init(order: Order, messageID: String?, created: Bool) {
        self.order = order
        self.messageID = messageID
        self.created = created
    }
}

/// How a payment attempt ended, for ``OrderStore/finish(_:result:)``.
public enum OrderResult: Sendable, Hashable {
    case completed
    case failed(reason: String)
}

/// Why an order was refused by the inventory gate. Nothing was stored.
public enum InventoryRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    /// Not enough units of `productID` left.
    case soldOut(productID: String)
    /// The customer would pass the product's per-customer limit.
    case limitExceeded(productID: String, limit: Int)
    /// `--strict-catalog` is on and the product is not in the catalog.
    case unknownProduct(productID: String)

    public var description: String {
        switch self {
        case let .soldOut(product): return "product '\(product)' is sold out"
        case let .limitExceeded(product, limit): return "per-customer limit of \(limit) reached for product '\(product)'"
        case let .unknownProduct(product): return "product '\(product)' is not in the catalog"
        }
    }
}

/// A repeated request that cannot be answered with the order it names. Nothing was stored.
public enum PlacementConflict: Error, Sendable, Hashable, CustomStringConvertible {
    /// The customer's idempotency key (or client order id) was first used with a different
    /// request: a different body, or another endpoint.
    case idempotencyMismatch(key: String)
    /// The client's `order_id` already names another customer's order.
    case orderIDTaken(orderID: String)

    public var description: String {
        switch self {
        case let .idempotencyMismatch(key):
            return "idempotency key '\(key)' was already used with a different request; send the same request to get its order, or use a new key"
        case let .orderIDTaken(id):
            return "order id '\(id)' is already taken; choose another"
        }
    }
}

/// An order after a finish or a settlement, and whether that call changed it.
public struct FinishedOrder: Sendable, Hashable {
    public var order: Order
    /// False when the order was already completed or failed (someone else finished it).
    public var changed: Bool

    public init(order: Order, changed: Bool) {
        self.order = order
        self.changed = changed
    }
}

/// A delivery a consumer gives back untried, with the order it was for (if it named one).
public struct UntriedDelivery: Sendable, Hashable {
    public var orderID: String?
    public var receipt: ReceiptHandle

    public init(orderID: String?, receipt: ReceiptHandle) {
        self.orderID = orderID
        self.receipt = receipt
    }
}

/// Why the reconciler looked at an open order: nothing else will.
public enum OrphanReason: String, Sendable, Hashable {
    /// A sync order whose request is over (its hold ran out): the request died or lost track.
    case syncRequestEnded = "sync request ended"
    /// A queued order whose payment message is no longer in the payments queue: purged, expired
    /// past retention, or dead-lettered.
    case messageGone = "payment message gone"
}

/// An open order that no live message, lease or request stands behind.
public struct Orphan: Sendable, Hashable {
    public var orderID: String
    public var reason: OrphanReason

    public init(orderID: String, reason: OrphanReason) {
        self.orderID = orderID
        self.reason = reason
    }
}

/// One page of the reconciler's scan over the open orders.
public struct OrphanScan: Sendable, Hashable {
    /// The orphans found on this page.
    public var orphans: [Orphan]
    /// Where the next page starts; nil when the scan reached the last open order.
    public var nextCursor: Int64?

    public init(orphans: [Orphan], nextCursor: Int64?) {
        self.orphans = orphans
        self.nextCursor = nextCursor
    }
}

/// Orders the reconciler settled, since the store was created.
public struct SettlementCounts: Sendable, Hashable {
    /// Settled as completed: a charge for them had succeeded.
    public var completed: Int
    /// Settled as failed: no charge had succeeded, and none can now.
    public var failed: Int

    public init(completed: Int = 0, failed: Int = 0) {
        self.completed = completed
        self.failed = failed
    }
}

/// Orders and their status, with the atomic steps the API and the workers need.
///
/// A backend stores an order, its stock reservation and (for queued orders) its payment
/// message in one transaction: a returned ``Placement`` is durable, message included.
///
/// Idempotency is scoped to the customer: a key names at most one order per customer, and a
/// repeat must be the same request (``NewOrder/fingerprint``), else ``PlacementConflict``.
/// A catalog product is always charged at the catalog's price; a client's price only fills in
/// for products the catalog has no price for.
public protocol OrderStore: Sendable {
    /// Stores a new order as `pending` and enqueues its payment message, atomically.
    /// A repeated idempotency key or client order id returns the first order (`created == false`).
    /// Throws ``InventoryRefusal`` when the inventory gate refuses it, ``PlacementConflict`` for
    /// a repeat that does not match (nothing stored either way).
    func placeQueued(_ order: NewOrder) async throws -> Placement

    /// Stores a new order as `processing`, to be charged by the caller at once (sync endpoint).
    /// Until `holdUntil` (Unix ms) the caller answers for the order; after it, an order still
    /// open is the reconciler's to settle.
    func placeImmediate(_ order: NewOrder, holdUntil: Int64) async throws -> Placement

    /// The order with this id.
    func order(id: String) async throws -> Order?

    /// Marks these orders `processing` and counts a payment attempt for each; returns every
    /// order found by id (orders already completed or failed are returned unchanged).
    func startProcessing(_ orderIDs: [String]) async throws -> [String: Order]

    /// Undoes ``startProcessing(_:)`` for orders whose deliveries were given back untried: one
    /// attempt fewer, and `pending` again if that was their only one.
    func returnUntried(_ orderIDs: [String]) async throws

    /// Marks the order completed or failed (reserved stock becomes sold, or goes back).
    /// An order already completed or failed is left as it is. Returns the order as stored.
    @discardableResult
    func finish(_ orderID: String, result: OrderResult) async throws -> Order?

    /// ``finish(_:result:)`` for a settlement: says whether this call changed the order (it was
    /// still open), and with `counted`, counts it in ``settlementCounts()`` when it did.
    func settle(_ orderID: String, result: OrderResult, counted: Bool) async throws -> FinishedOrder?

    /// Scans up to `limit` open orders after `cursor` (0: from the start) for queued orders whose
    /// message is gone (sync orders have none: ``expiredHolds(now:limit:)`` finds theirs).
    func orphans(after cursor: Int64, limit: Int) async throws -> OrphanScan

    /// Up to `limit` open sync orders whose hold ended before `now` (Unix ms), oldest hold first:
    /// a direct look-up, so a dead request's order is settled soon whatever the backlog.
    func expiredHolds(now: Int64, limit: Int) async throws -> [Orphan]

    /// What the reconciler has settled.
    func settlementCounts() async throws -> SettlementCounts

    /// Orders by status.
    func counts() async throws -> OrderCounts

    /// Roughly how many queued orders are ahead of this pending one.
    func queuePosition(of order: Order) async throws -> Int?
}

/// A store that also holds the payments queue (the embedded SQLite backend), and so can record
/// an order's result and delete its message in one transaction: no window in which one is done
/// and the other is not.
public protocol QueueAcknowledgingOrderStore: OrderStore {
    /// Whether `queueName` is the queue this store can delete from.
    func acknowledges(queueName: String) -> Bool

    /// ``OrderStore/finish(_:result:)`` and the message's deletion, atomically. A stale receipt
    /// (the lease ran out, or the message was purged) deletes nothing, but the result is still
    /// recorded: it is the gateway's idempotent answer, the same any other delivery would get.
    @discardableResult
    func finish(_ orderID: String, result: OrderResult, deleting receipt: ReceiptHandle) async throws -> Order?

    /// ``MessageQueue/returnUntried(_:)`` and, for each delivery whose receipt was still current,
    /// ``OrderStore/returnUntried(_:)`` of its order, atomically. (A stale receipt's message was
    /// delivered again meanwhile: the attempt now on the order is that delivery's.)
    func returnUntried(_ deliveries: [UntriedDelivery]) async throws
}
