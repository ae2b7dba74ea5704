import FlashCore
import FlashOrders
import FlashQueue
import Synchronization

/// The order store of a process whose payments queue lives in another system (SQS): a
/// transactional outbox over the backend's own store.
///
/// - **Placing** is the backend's: the order, its reservation and its payment message commit in
///   one transaction, the message going to the backend's local outbox queue. A 202 therefore
///   still means the order is durable and its message will be delivered: ``OutboxRelay``
///   publishes the outbox to the payments queue, at least once.
/// - **Workers** read ``paymentsQueue`` (the external queue). Finishing records the result first
///   and deletes the delivery after, as the ``OrderStore`` contract says of a store that does not
///   hold the queue: a crash between the two leaves a message whose redelivery finds the order
///   finished. Giving a delivery back is the queue's first, then the order's attempt.
/// - **The reconciler** cannot look inside SQS for an order's message. An open queued order is
///   taken as orphaned when its outbox message is gone (relayed) and it was placed before the
///   queue's retention could have dropped its message, or before a purge not yet settled (made
///   through any process: ``PurgeFence``). Dead-lettered messages are found by reading the
///   dead-letter queue, as on every backend.
public final class OutboxOrderStore: OrderStore {
    /// The backend's own store: it places orders with their outbox message.
    public let local: any OrderStore
    public var admissionLine: AdmissionLine? { local.admissionLine }
    let external: WatchedQueue
    /// Past the queue's retention by this much, a relayed order's message is surely gone.
    let retentionGrace: Duration

    /// - Parameters:
    ///   - local: the backend's store, whose payments queue is the outbox.
    ///   - paymentsQueue: the queue the workers read (SQS).
    ///   - retention: how long `paymentsQueue` keeps a message (its MessageRetentionPeriod).
    ///   - fence: the fleet's record of purges of `paymentsQueue`.
    public init(local: any OrderStore, paymentsQueue: any MessageQueue, retention: Duration, fence: PurgeFence,
                retentionGrace: Duration = .seconds(300)) {
        self.local = local
        self.external = WatchedQueue(paymentsQueue, retention: retention, fence: fence)
        self.retentionGrace = retentionGrace
    }

    /// The fleet's record of purges of the payments queue.
    public var fence: PurgeFence { external.fence }

    /// The queue the workers read.
    public var paymentsQueue: any MessageQueue { external }
    /// The local queue the relay publishes from.
    public var outbox: any MessageQueue { local.paymentsQueue }

    public func placeQueued(_ order: NewOrder) async throws -> Placement { try await local.placeQueued(order) }
    public func placeImmediate(_ order: NewOrder, holdUntil: Int64) async throws -> Placement {
        try await local.placeImmediate(order, holdUntil: holdUntil)
    }
    public func order(id: String) async throws -> Order? { try await local.order(id: id) }
    public func orders(status: OrderStatus?, before cursor: Int64?, limit: Int) async throws -> OrderPage {
        try await local.orders(status: status, before: cursor, limit: limit)
    }
    public func startProcessing(_ orderIDs: [String]) async throws -> [String: Order] { try await local.startProcessing(orderIDs) }
    public func returnAttempts(_ orderIDs: [String]) async throws { try await local.returnAttempts(orderIDs) }
    public func settle(_ orderID: String, result: OrderResult, counted: Bool, event: OrderEvent?) async throws -> FinishedOrder? {
        try await local.settle(orderID, result: result, counted: counted, event: event)
    }

    /// The dead-letter queue is SQS's, which the local store cannot see: the caller vouches for it.
    public func markDeadLettered(_ orderID: String, messageID: String, verifying: Bool, by actor: String) async throws -> DeadLetterMark {
        try await local.markDeadLettered(orderID, messageID: messageID, verifying: false, by: actor)
    }

    public func record(_ events: [OrderEvent]) async throws {
        try await local.record(events)
    }

    public func events(of orderID: String, limit: Int) async throws -> [OrderEvent] {
        try await local.events(of: orderID, limit: limit)
    }
    public func expiredHolds(now: Int64, limit: Int) async throws -> [Orphan] { try await local.expiredHolds(now: now, limit: limit) }
    public func settlementCounts() async throws -> SettlementCounts { try await local.settlementCounts() }
    public func counts() async throws -> OrderCounts { try await local.counts() }

    /// How long a delivery given back with no order touched stays hidden (see ``returnUntried(_:)``).
    static let untouchedBackoff: Duration = .seconds(10)

    /// The queue first; then, for each delivery SQS took back (its receipt was current), the
    /// attempt on its order is given back too.
    ///
    /// SQS counts every receive toward its redrive policy, given back or not. A delivery whose
    /// order was never touched (the store failed before the worker could prepare it: the
    /// backend is away) is therefore hidden for ``untouchedBackoff`` rather than offered again at
    /// once; otherwise the fetchers' retries would use up its receives in a second or two of
    /// outage and dead-letter an order nobody tried.
    public func returnUntried(_ deliveries: [UntriedDelivery]) async throws {
        guard !deliveries.isEmpty else { return }
        let prepared = deliveries.filter { $0.orderID != nil }
        for delivery in deliveries where delivery.orderID == nil {
            try? await external.changeVisibility(delivery.receipt, timeout: Self.untouchedBackoff)
        }
        guard !prepared.isEmpty else { return }
        let current = try await external.returnUntried(prepared.map(\.receipt))
        let ids = zip(prepared, current).compactMap { delivery, isCurrent in isCurrent ? delivery.orderID : nil }
        try await local.returnAttempts(ids)
    }

    /// The result first, then the delivery (a stale receipt deletes nothing; the result stands).
    @discardableResult
    public func finish(_ orderID: String, result: OrderResult, deleting receipt: ReceiptHandle?) async throws -> Order? {
        let order = try await local.finish(orderID, result: result, deleting: nil)
        if let receipt {
            do {
                try await external.delete(receipt)
            } catch QueueError.receiptHandleInvalid {
                // Received again meanwhile: that delivery finds the order finished and deletes it.
            }
        }
        return order
    }

    /// The local scan (its "message gone" means: relayed, or never had one), kept to the orders
    /// whose external message must be gone too: placed before the retention window, or before a
    /// purge of the payments queue (through any process) not yet settled (see ``PurgeFence``).
    public func orphans(after cursor: Int64, limit: Int) async throws -> OrphanScan {
        if cursor == 0 { try await external.fence.passBegins() }
        // Read first: a purge recorded after the scan read an order cannot make it an orphan.
        let purged = try await external.fence.orphansAllRelayed()
        var scan = try await local.orphans(after: cursor, limit: limit)
        let expiredBefore = WallClock.nowMillis() - (external.retention + retentionGrace).asMilliseconds
        // While a purge is unsettled, every relayed order was relayed before it (see PurgeFence).
        let cutoff = purged ? Int64.max : expiredBefore
        // An order the local store gave no time for (placedAt 0) is kept: it cannot be shown old.
        scan.orphans.removeAll { $0.reason == .messageGone && !purged && ($0.placedAt == 0 || $0.placedAt >= cutoff) }
        return scan
    }

    public func orphanPassCompleted() async throws {
        try await external.fence.passCompleted()
    }
}

/// The external payments queue, recording each purge for the whole fleet (``PurgeFence``).
final class WatchedQueue: MessageQueue {
    let base: any MessageQueue
    let retention: Duration
    let fence: PurgeFence
    private let visibleCache = Mutex<(count: Int, at: ContinuousClock.Instant)?>(nil)

    init(_ base: any MessageQueue, retention: Duration, fence: PurgeFence) {
        self.base = base
        self.retention = retention
        self.fence = fence
    }

    var name: String { base.name }
    func send(_ body: String, delay: Duration) async throws -> String { try await base.send(body, delay: delay) }
    func sendBatch(_ messages: [OutgoingMessage]) async throws -> [String] { try await base.sendBatch(messages) }
    func receive(maxMessages: Int, wait: Duration, visibilityTimeout: Duration?) async throws -> [ReceivedMessage] {
        try await base.receive(maxMessages: maxMessages, wait: wait, visibilityTimeout: visibilityTimeout)
    }
    func changeVisibility(_ receipt: ReceiptHandle, timeout: Duration) async throws { try await base.changeVisibility(receipt, timeout: timeout) }
    func delete(_ receipt: ReceiptHandle) async throws { try await base.delete(receipt) }
    func deleteBatch(_ receipts: [ReceiptHandle]) async throws -> [Result<Void, QueueError>] { try await base.deleteBatch(receipts) }
    @discardableResult
    func returnUntried(_ receipts: [ReceiptHandle]) async throws -> [Bool] { try await base.returnUntried(receipts) }
    @discardableResult
    func sweepExpired() async throws -> Int { try await base.sweepExpired() }
    /// Bounded: `/stats` answers an error within 5 s when AWS does not answer, rather than wait
    /// for every retry.
    func statistics() async throws -> QueueStatistics {
        try await withTimeout(.seconds(5)) { [base] in try await base.statistics() }
    }

    /// SQS's approximate count (it cannot count by send time), asked at most once a second and
    /// for 2 s at most: an order's status page estimates its place with it, and must neither
    /// call AWS per request nor wait on an AWS that does not answer.
    func countVisible(sentAtOrBefore millis: Int64) async throws -> Int {
        let now = ContinuousClock.now
        if let cached = visibleCache.withLock({ $0 }), now - cached.at < .seconds(1) { return cached.count }
        let count = try await withTimeout(.seconds(2)) { [base] in try await base.countVisible(sentAtOrBefore: millis) }
        visibleCache.withLock { $0 = (count, now) }
        return count
    }

    /// Recorded before the call: from then on no relay publishes, so that nothing sent during
    /// SQS's deleting is lost with the backlog, and every process settles what was relayed before.
    func purge() async throws {
        try await fence.purge { try await base.purge() }
    }
}
