import FlashCore
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

/// A delivery a worker claimed (``OrderStore/claim(maxMessages:wait:visibilityTimeout:)``),
/// with the order its message names as the claim left it.
public struct Claim: Sendable {
    /// The delivery, leased to the claimer.
    public var message: ReceivedMessage
    /// The order id the message names; nil when its body is not a payment message.
    public var orderID: String?
    /// The order as stored after the claim started it; nil when no such order exists.
    public var order: Order?

    public init(message: ReceivedMessage, orderID: String?, order: Order?) {
        self.message = message
        self.orderID = orderID
        self.order = order
    }

    /// Each message with the order id it names and that order, from `orders` by id.
    public static func pairing(_ messages: [ReceivedMessage], with orders: [String: Order]) -> [Claim] {
        messages.map { message in
            let id = PaymentMessage.orderID(in: message.body)
            return Claim(message: message, orderID: id, order: id.flatMap { orders[$0] })
        }
    }
}

/// Why the reconciler looked at an open order: nothing else will.
public enum OrphanReason: String, Sendable, Hashable {
    /// A sync order whose request is over (its hold ran out): the request died or lost track.
    case syncRequestEnded = "sync request ended"
    /// A queued order whose payment message is no longer in the payments queue: purged, expired
    /// past retention, or dead-lettered.
    case messageGone = "payment message gone"
    /// A queued order whose payment message is in the payments queue's dead-letter queue (a
    /// store that can see it there says so; otherwise it is ``messageGone``).
    case deadLettered = "payment message dead-lettered"
}

/// An open order that no live message, lease or request stands behind.
public struct Orphan: Sendable, Hashable {
    public var orderID: String
    public var reason: OrphanReason
    /// When the order was placed (Unix ms); 0 when the store did not say.
    public var placedAt: Int64

    public init(orderID: String, reason: OrphanReason, placedAt: Int64 = 0) {
        self.orderID = orderID
        self.reason = reason
        self.placedAt = placedAt
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

/// Orders and their status: the storage primitives a backend supplies, with their atomicity
/// contract. The rules they apply (inventory, prices, transitions, the payment message) are the
/// core's (``InventoryRules``, ``Order/startingAttempt(now:)`` and its siblings, ``PaymentMessage``);
/// a backend only stores their results, atomically as each method says. Every backend passes the
/// same contract suite (`Tests/FlashOrdersTests/OrderStoreContractTests.swift`).
///
/// **Placing.** An order, its stock reservation and (for queued orders) its payment message
/// commit in one transaction: a returned ``Placement`` is durable, message included, and a
/// refused one stored nothing. The gate's check-then-reserve runs on rows no concurrent
/// placement can change before the commit, so stock never goes below zero with any number of
/// processes.
///
/// **Idempotency** is scoped to the customer: a key names at most one order per customer, and a
/// repeat must be the same request (``NewOrder/fingerprint``), else ``PlacementConflict``.
///
/// **Counts** are stored counters moved in the same transactions as the orders, so
/// ``counts()`` is exact for every process sharing the store and costs no scan.
public protocol OrderStore: Sendable {
    /// The queue the payment messages of queued orders go to (and the workers read).
    var paymentsQueue: any MessageQueue { get }

    /// The line placements wait in for their transaction, as admission control sees it: it
    /// refuses on arrival those it foretells would not begin by their ``NewOrder/admitBy``, and
    /// times the others' waits. nil when the store has no such line.
    var admissionLine: AdmissionLine? { get }

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

    /// Applies ``Order/startingAttempt(now:)`` to each of these orders; returns every order found
    /// by id (orders already completed or failed are returned unchanged).
    func startProcessing(_ orderIDs: [String]) async throws -> [String: Order]

    /// Claims work for the payment workers: receives up to `maxMessages` deliveries from
    /// ``paymentsQueue`` (a long poll of up to `wait`, each leased for `visibilityTimeout`) and
    /// starts their orders (``startProcessing(_:)``). Each delivery comes with the order its
    /// message names, as stored after the start (nil when the body names none, or no such order
    /// exists). Empty when nothing arrived within `wait`.
    ///
    /// Atomic on a backend that holds the queue: one transaction leases the deliveries and
    /// starts their orders, so a failure leases and starts nothing. Otherwise (the default:
    /// receive, then start) a failure to start gives the deliveries back untried before it is
    /// thrown.
    func claim(maxMessages: Int, wait: Duration, visibilityTimeout: Duration) async throws -> [Claim]

    /// Gives deliveries back untried (``MessageQueue/returnUntried(_:)``) and, for each one whose
    /// receipt was still current, applies ``Order/returningUntried(now:)`` to its order. Atomic on
    /// a backend that holds the queue; otherwise the queue first, so a crash between the two
    /// leaves an attempt counted, never one uncounted that was tried.
    func returnUntried(_ deliveries: [UntriedDelivery]) async throws

    /// Applies ``Order/returningUntried(now:)`` to each of these orders: for deliveries given
    /// back to a queue this store does not hold (SQS), after the queue took them back.
    func returnAttempts(_ orderIDs: [String]) async throws

    /// Applies ``Order/finishing(_:now:)`` (reserved stock becomes sold, or goes back) and, with a
    /// receipt, deletes that delivery's payment message. An order already finished is left as it
    /// is; a stale receipt deletes nothing (the result, the gateway's idempotent answer, stands).
    /// Atomic on a backend that holds the queue; otherwise the order first, then the message
    /// (a crash between leaves a message whose redelivery finds the order finished).
    /// Returns the order as stored.
    @discardableResult
    func finish(_ orderID: String, result: OrderResult, deleting receipt: ReceiptHandle?) async throws -> Order?

    /// ``finish(_:result:deleting:)`` for a settlement: says whether this call changed the order
    /// (it was still open), and with `counted`, counts it in ``settlementCounts()`` when it did.
    /// When it did, `event` (who settled it and why) joins the order's history in the same
    /// transaction.
    func settle(_ orderID: String, result: OrderResult, counted: Bool, event: OrderEvent?) async throws -> FinishedOrder?

    /// Scans up to `limit` open orders after `cursor` (0: from the start) for queued orders whose
    /// message is gone (sync orders have none: ``expiredHolds(now:limit:)`` finds theirs).
    func orphans(after cursor: Int64, limit: Int) async throws -> OrphanScan

    /// Told after a complete pass of ``orphans(after:limit:)`` calls (from cursor 0 to the end)
    /// whose orphans were all settled. A store whose orphans depend on an event (a purge of an
    /// external queue) learns here that the event's orphans are settled. Nothing by default.
    func orphanPassCompleted() async throws

    /// Up to `limit` open sync orders whose hold ended before `now` (Unix ms), oldest hold first:
    /// a direct look-up, so a dead request's order is settled soon whatever the backlog.
    func expiredHolds(now: Int64, limit: Int) async throws -> [Orphan]

    /// What the reconciler has settled (stored: the whole fleet's).
    func settlementCounts() async throws -> SettlementCounts

    /// Orders by status (stored counters: the whole fleet's).
    func counts() async throws -> OrderCounts

    /// Orders newest first (in placement order), only those in `status` when it is given, and
    /// only those placed before the `before` cursor (a page's ``OrderPage/next``); at most
    /// `limit`. What the console browses.
    func orders(status: OrderStatus?, before cursor: Int64?, limit: Int) async throws -> OrderPage

    /// Up to `limit` messages of the payments queue's dead-letter queue, oldest first, seen
    /// without receiving them (hidden ones included), each with its order as stored; with
    /// `openOnly`, only those whose order is open. Empty when the queue has no dead-letter queue.
    /// Throws ``DeadLettersUnsupported`` where the queue cannot be looked at (SQS): the default.
    func deadLetters(limit: Int, openOnly: Bool) async throws -> [DeadLetter]

    /// The dead letter with this message id, if it is in the dead-letter queue (as
    /// ``deadLetters(limit:openOnly:)``; the same default).
    func deadLetter(messageID: String) async throws -> DeadLetter?

    /// Sends these dead letters back to the payments queue, each in one transaction with its
    /// order (``Order/redriven(now:)``): visible at once, receive count reset. A message whose
    /// order is finished stays where it is (``RedriveOutcome/orderFinal(_:)``). One outcome per
    /// id, in order. Each redriven order's history gets a ``OrderEvent/Kind/redriven`` event by
    /// `actor`, in the same transaction. Throws ``DeadLettersUnsupported`` where the queue cannot
    /// be moved (the default).
    func redrive(_ messageIDs: [String], by actor: String) async throws -> [RedriveOutcome]

    /// Notes that an open order's message is in the dead-letter queue: stamps
    /// ``Order/deadLetteredAt`` (the first time only; a redrive clears it) with a
    /// ``OrderEvent/Kind/deadLettered`` event by `actor`, in one transaction. With `verifying`, it
    /// first checks, in that transaction, that message `messageID` is in this store's
    /// dead-letter queue (a caller that read it there before a redrive must not stamp the
    /// order again); without, the caller vouches for it (the queue is elsewhere: SQS).
    func markDeadLettered(_ orderID: String, messageID: String, verifying: Bool, by actor: String) async throws -> DeadLetterMark

    /// Adds events to their orders' histories. An event the same as one its order already has
    /// (same kind and detail) is not added again, so a step repeated after a crash tells once.
    func record(_ events: [OrderEvent]) async throws

    /// The order's recorded events, oldest first, at most `limit`.
    func events(of orderID: String, limit: Int) async throws -> [OrderEvent]
}

/// One page of orders, newest first.
public struct OrderPage: Sendable {
    public var orders: [Order]
    /// The cursor of the next (older) page; nil when this is the last.
    public var next: Int64?

    public init(orders: [Order], next: Int64?) {
        self.orders = orders
        self.next = next
    }

    /// The page from rows read with a limit one larger than asked (`seq` of each row beside it).
    public init(rows: [(order: Order, seq: Int64)], limit: Int) {
        let page = rows.prefix(limit)
        self.orders = page.map(\.order)
        self.next = rows.count > limit ? page.last?.seq : nil
    }
}

extension OrderStore {
    /// Receives, then starts the orders: two steps, for a queue the store does not hold (SQS).
    public func claim(maxMessages: Int, wait: Duration, visibilityTimeout: Duration) async throws -> [Claim] {
        let messages = try await paymentsQueue.receive(maxMessages: maxMessages, wait: wait, visibilityTimeout: visibilityTimeout)
        guard !messages.isEmpty else { return [] }
        let ids = messages.compactMap { PaymentMessage.orderID(in: $0.body) }
        let orders: [String: Order]
        do {
            orders = ids.isEmpty ? [:] : try await startProcessing(ids)
        } catch {
            // Received but not started: nothing was tried, so the deliveries go back uncounted,
            // in a task of its own so that a cancelled claimer (a shutdown) still gives them
            // back. If that fails too, their leases run out.
            let untried = messages.map { UntriedDelivery(orderID: nil, receipt: $0.receiptHandle) }
            await Task { try? await returnUntried(untried) }.value
            throw error
        }
        return Claim.pairing(messages, with: orders)
    }

    public func orphanPassCompleted() async throws {}

    public func deadLetters(limit: Int, openOnly: Bool) async throws -> [DeadLetter] { throw DeadLettersUnsupported() }

    public func deadLetter(messageID: String) async throws -> DeadLetter? { throw DeadLettersUnsupported() }

    public func redrive(_ messageIDs: [String], by actor: String) async throws -> [RedriveOutcome] { throw DeadLettersUnsupported() }

    public var admissionLine: AdmissionLine? { nil }

    /// Finishes an order without a delivery to delete (the sync endpoint, the reconciler).
    @discardableResult
    public func finish(_ orderID: String, result: OrderResult) async throws -> Order? {
        try await finish(orderID, result: result, deleting: nil)
    }

    /// Roughly how many queued orders are ahead of this pending one: the visible messages sent
    /// at or before it (an estimate: messages of other producers, and leased ones, are not
    /// ordered exactly). Nil when it is not pending, or when ``QueueLimits/countCeiling`` or more
    /// are ahead (the count stops there: a place beyond it is not known).
    public func queuePosition(of order: Order) async throws -> Int? {
        guard order.status == .pending else { return nil }
        let ahead = try await paymentsQueue.countVisible(sentAtOrBefore: order.createdAt)
        return ahead < QueueLimits.countCeiling ? ahead : nil
    }
}
