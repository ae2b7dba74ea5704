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

/// Orders and their status, with the atomic steps the API and the workers need.
///
/// A backend stores an order, its stock reservation and (for queued orders) its payment
/// message in one transaction: a returned ``Placement`` is durable, message included.
public protocol OrderStore: Sendable {
    /// Stores a new order as `pending` and enqueues its payment message, atomically.
    /// A repeated idempotency key or client order id returns the first order (`created == false`).
    /// Throws ``InventoryRefusal`` when the inventory gate refuses it (nothing stored).
    func placeQueued(_ order: NewOrder) async throws -> Placement

    /// Stores a new order as `processing`, to be charged by the caller at once (sync endpoint).
    func placeImmediate(_ order: NewOrder) async throws -> Placement

    /// The order with this id.
    func order(id: String) async throws -> Order?

    /// Marks these orders `processing` and counts a payment attempt for each; returns every
    /// order found by id (orders already completed or failed are returned unchanged).
    func startProcessing(_ orderIDs: [String]) async throws -> [String: Order]

    /// Marks the order completed or failed (reserved stock becomes sold, or goes back).
    /// An order already completed or failed is left as it is. Returns the order as stored.
    @discardableResult
    func finish(_ orderID: String, result: OrderResult) async throws -> Order?

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

    /// ``OrderStore/finish(_:result:)`` and the message's deletion, atomically. Throws
    /// `QueueError.receiptHandleInvalid` (and changes nothing) if the receipt is stale.
    @discardableResult
    func finish(_ orderID: String, result: OrderResult, deleting receipt: ReceiptHandle) async throws -> Order?
}
