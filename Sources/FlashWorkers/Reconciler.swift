import FlashBackend
import FlashCore
import FlashOrders
import FlashQueue
import Logging
import ServiceLifecycle
import Synchronization

/// Settles the orders that nothing else will ever look at again, by the rule of
/// ``OrderSettler``: a Service beside the worker pool.
///
/// Two loops:
/// - The sweep, every ``Configuration/interval``: enforces the payments queue's retention (so it
///   holds when nobody receives), settles the sync orders whose request is over (looked up by
///   their hold), then pages through the open orders for queued orders whose message is no
///   longer in the payments queue (purged, expired or dead-lettered) and settles them. A page is a range of the store's open
///   orders index, so a sweep costs the open orders, not the history. Orders the gateway cannot
///   answer for stay open and are tried at the next sweep (counted in ``Statistics/unresolved``).
/// - The dead-letter handler: long-polls the dead-letter queue and settles each message's order
///   at once, or when its ``Configuration/deadLetterHold`` ends (the message is parked until
///   then, and an operator may redrive it or ``settleNow(_:by:)`` meanwhile); one message that
///   cannot be settled goes back for a short backoff without holding up the rest. Settled
///   messages stay parked in the dead-letter queue for inspection.
///
/// Safe in several processes at once: the gateway's void is atomic, and the store changes an
/// open order only once.
public final class Reconciler: Service {
    /// The reconciler's settings.
    public struct Configuration: Sendable {
        /// Time between sweeps.
        public var interval: Duration
        /// Open orders read per page of a sweep.
        public var pageSize: Int
        /// Open orders one sweep reads at most; the next sweep goes on from there. The scan is
        /// the safety net (purges settle their own orphans, retention restarts it at the oldest
        /// orders, dead letters and sync holds have their own look-ups), so it is paced: at the
        /// default 2,000 per 1 s sweep, a backlog of a million open orders is read in about 8 min,
        /// and the accept path keeps its speed (measured: 20,000 rows a second cost 10–20%).
        public var rowsPerSweep: Int
        /// Settlements in progress at once.
        public var concurrency: Int
        /// How soon a dead letter whose order could not be settled (the gateway did not answer)
        /// is tried again.
        public var deadLetterRetry: Duration
        /// How long an order whose payment message was dead-lettered stays open for an operator
        /// to redrive it, counted from when its message was found in the dead-letter queue
        /// (``Order/deadLetteredAt``); then it is settled. Zero (the default) settles it at once:
        /// a customer is not kept waiting on an order nobody will try again. Orders whose message
        /// was purged or expired are not held, and a purge's own pass does not wait.
        public var deadLetterHold: Duration = .zero
        /// Who this reconciler is in an order's history (``OrderEvent/actor``).
        public var actor = "the reconciler"
        /// Where the backoffs read "now": a steady clock (backoffs live in this process only)
        /// unless a test moves time itself.
        public var time: TimeSource = .monotonic

        public init(interval: Duration = .seconds(1), pageSize: Int = 500, rowsPerSweep: Int = 2_000, concurrency: Int = 16,
                    deadLetterRetry: Duration = .seconds(5), deadLetterHold: Duration = .zero) {
            self.deadLetterHold = deadLetterHold
            self.interval = interval
            self.pageSize = pageSize
            self.rowsPerSweep = rowsPerSweep
            self.concurrency = concurrency
            self.deadLetterRetry = deadLetterRetry
        }
    }

    /// What this process's reconciler has done (the durable settlement counts are the store's).
    public struct Statistics: Sendable, Hashable {
        /// Sweeps run.
        public var sweeps = 0
        /// Orphans the last complete pass could not settle (the gateway did not answer).
        public var unresolved = 0
        /// When the last sweep ended (Unix ms), if any.
        public var lastSweepMillis: Int64?
    }

    /// The outcome of settling a set of orphans.
    public struct Pass: Sendable, Hashable {
        public var completed = 0
        public var failed = 0
        /// Orphans the gateway could not answer for (or that wait for their next try).
        public var unresolved = 0
        /// Orphans left open for an operator: their ``Configuration/deadLetterHold`` has not ended.
        public var held = 0
        /// Whether every open order was looked at (false when the time budget ran out first).
        public var complete = true

        public init() {}
    }

    /// When an orphan the gateway could not answer for may be asked about again: the first retry
    /// after ``firstRetry``, doubling up to ``longestRetry``, so an outage does not turn every
    /// sweep into thousands of failing calls.
    private struct Backoff {
        /// Milliseconds on ``Configuration/time``.
        var until: Int64
        var failures: Int
    }
    static let firstRetry: Duration = .seconds(1)
    static let longestRetry: Duration = .seconds(300)
    /// Orphans with a backoff kept at most; past it the memory is cleared (all are tried again).
    static let backoffCapacity = 100_000

    public let configuration: Configuration
    let store: any OrderStore
    let settler: OrderSettler
    let paymentsQueue: any MessageQueue
    let deadLetterQueue: (any MessageQueue)?
    let processed: RateMeter
    let logger: Logger
    private let state = Mutex(Statistics())
    /// Where the next sweep's scan starts (0: the first open order).
    private let cursor = Atomic<Int64>(0)
    /// Orphans left unresolved in the scan pass in progress.
    private let passUnresolved = Atomic<Int>(0)
    private let backoffs = Mutex<[String: Backoff]>([:])
    /// Held by a sweep and by a purge with its settling pass, so that a sweep cannot settle the
    /// orders a purge orphaned before the purge's own pass counts them.
    private let exclusive = AsyncSemaphore(permits: 1)
    private let orderMetrics: OrderMetrics

    public init(configuration: Configuration = Configuration(), store: any OrderStore, settler: OrderSettler,
                paymentsQueue: any MessageQueue, deadLetterQueue: (any MessageQueue)?, processed: RateMeter,
                orderMetrics: OrderMetrics = .none, logger: Logger) {
        self.orderMetrics = orderMetrics
        self.configuration = configuration
        self.store = store
        self.settler = settler
        self.paymentsQueue = paymentsQueue
        self.deadLetterQueue = deadLetterQueue
        self.processed = processed
        self.logger = logger
    }

    /// This process's figures.
    public var statistics: Statistics { state.withLock { $0 } }

    /// Runs both loops until graceful shutdown (or cancellation).
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.sweepLoop() }
                group.addTask { await self.deadLetterLoop() }
            }
        }
    }

    // MARK: Sweeping

    private func sweepLoop() async {
        while !Task.isCancelled {
            await sweep()
            do { try await Task.sleep(for: configuration.interval) } catch { return }
        }
    }

    /// One sweep: retention, then up to ``Configuration/rowsPerSweep`` open orders from where
    /// the last sweep stopped.
    public func sweep() async {
        guard await exclusive.acquire() else { return }
        defer { exclusive.release() }
        do {
            let dropped = try await paymentsQueue.sweepExpired()
            if dropped > 0 {
                logger.warning("messages dropped past retention; their orders will be settled", metadata: ["dropped": "\(dropped)"])
                // The oldest messages went: their orders are at the start of the scan.
                cursor.store(0, ordering: .relaxed)
            }
        } catch is CancellationError {
            return  // shutting down
        } catch {
            logger.error("retention sweep failed", metadata: ["error": "\(error)"])
        }
        // Sync orders whose request ended: looked up directly, whatever the backlog.
        do {
            let holds = try await store.expiredHolds(now: WallClock.nowMillis(), limit: configuration.pageSize)
            _ = await settle(holds)
        } catch is CancellationError {
            return
        } catch {
            logger.error("expired-hold look-up failed", metadata: ["error": "\(error)"])
        }
        var read = 0
        while read < configuration.rowsPerSweep, !Task.isCancelled {
            let page: (pass: Pass, next: Int64?)
            let from = cursor.load(ordering: .relaxed)
            if from == 0 { passUnresolved.store(0, ordering: .relaxed) }
            do {
                page = try await settlePage(after: from)
            } catch is CancellationError {
                return
            } catch {
                logger.error("orphan scan failed", metadata: ["error": "\(error)"])
                break
            }
            read += configuration.pageSize
            passUnresolved.add(page.pass.unresolved, ordering: .relaxed)
            if let next = page.next {
                cursor.store(next, ordering: .relaxed)
            } else {
                // A whole pass over the open orders is done: start the next one from the first.
                cursor.store(0, ordering: .relaxed)
                let unresolved = passUnresolved.exchange(0, ordering: .relaxed)
                state.withLock { $0.unresolved = unresolved }
                if unresolved == 0 { await passCompleted() }
                break
            }
        }
        state.withLock {
            $0.sweeps += 1
            $0.lastSweepMillis = WallClock.nowMillis()
        }
    }

    /// Purges `queue`, then scans every open order and settles the orphans the purge made (and
    /// any dead-lettered order the scan meets, held or not: a purge settles at once), giving up
    /// after `budget` (whatever is left is the sweeps' to settle). No sweep runs in
    /// between, so the pass counts what the purge orphaned.
    public func purge(_ queue: any MessageQueue, settlingWithin budget: Duration) async throws -> Pass {
        guard await exclusive.acquire() else { throw CancellationError() }
        defer { exclusive.release() }
        try await queue.purge()
        return await settleOrphans(budget: budget)
    }

    /// Scans every open order now and settles the orphans, giving up after `budget`.
    private func settleOrphans(budget: Duration) async -> Pass {
        let deadline = ContinuousClock.now + budget
        var total = Pass()
        var from: Int64 = 0
        total.complete = false
        while ContinuousClock.now < deadline {
            // A purge settles what it orphaned now: the dead-letter hold is not for it.
            guard let scan = try? await store.orphans(after: from, limit: configuration.pageSize) else { break }
            let page = (pass: await settle(scan.orphans, holding: false), next: scan.nextCursor)
            total.completed += page.pass.completed
            total.failed += page.pass.failed
            total.unresolved += page.pass.unresolved
            guard let next = page.next else {
                total.complete = true
                if total.unresolved == 0 { await passCompleted() }
                break
            }
            from = next
        }
        return total
    }

    /// Tells the store that a whole pass settled every orphan it found.
    private func passCompleted() async {
        do {
            try await store.orphanPassCompleted()
        } catch {
            logger.warning("could not record a completed orphan pass; the next one will", metadata: ["error": "\(error)"])
        }
    }

    /// Reads one page of open orders after `cursor` and settles its orphans; returns what that
    /// came to and where the next page starts (nil after the last).
    private func settlePage(after cursor: Int64) async throws -> (pass: Pass, next: Int64?) {
        let scan = try await store.orphans(after: cursor, limit: configuration.pageSize)
        return (await settle(scan.orphans, holding: true), scan.nextCursor)
    }

    /// Settles orphans, ``Configuration/concurrency`` at a time; with `holding`, an order whose
    /// message is gone is left open while its ``Configuration/deadLetterHold`` lasts.
    func settle(_ orphans: [Orphan], holding: Bool = false) async -> Pass {
        guard !orphans.isEmpty else { return Pass() }
        return await withTaskGroup(of: Settled.self) { group in
            var pass = Pass()
            var next = 0
            func record(_ settled: Settled) {
                switch settled {
                case .completed: pass.completed += 1
                case .failed: pass.failed += 1
                case .unresolved: pass.unresolved += 1
                case .held: pass.held += 1
                case .unchanged: break
                }
            }
            for orphan in orphans {
                if next >= configuration.concurrency, let settled = await group.next() { record(settled) }
                next += 1
                group.addTask {
                    if orphan.reason == .deadLettered {
                        // In its history, and held for an operator while the hold lasts (not
                        // for a purge's own pass).
                        switch await self.markDeadLettered(orphan.orderID, messageID: nil) {
                        case let .marked(order)?:
                            if holding, self.holdEnd(of: order) != nil { return .held }
                        case .finished?, .notFound?, .notDeadLettered?:
                            return .unchanged  // finished, or sent back since the scan read it
                        case nil:
                            // The store did not answer: with a hold, nothing is settled before it is known.
                            if self.configuration.deadLetterHold > .zero { return .unresolved }
                        }
                    }
                    return await self.settle(orphan.orderID, why: "payment abandoned (\(orphan.reason.rawValue))")
                }
            }
            for await settled in group { record(settled) }
            return pass
        }
    }

    enum Settled: Sendable { case completed, failed, unresolved, held, unchanged }

    /// When the dead-letter hold of this order ends (Unix ms), if it is open, marked
    /// dead-lettered, and the hold has not ended; nil otherwise (no hold configured, or the store
    /// could not say).
    public func heldUntil(_ orderID: String) async -> Int64? {
        guard configuration.deadLetterHold > .zero, let order = try? await store.order(id: orderID) else { return nil }
        return holdEnd(of: order)
    }

    /// ``heldUntil(_:)`` for an order already read: the hold counts from when its message was
    /// found dead-lettered (``Order/deadLetteredAt``), not from its last attempt, so a pause or
    /// an outage before the dead-lettering does not use the hold up.
    public func holdEnd(of order: Order) -> Int64? {
        guard configuration.deadLetterHold > .zero, !order.status.isTerminal, let since = order.deadLetteredAt else { return nil }
        let until = since + configuration.deadLetterHold.asMilliseconds
        return until > WallClock.nowMillis() ? until : nil
    }

    /// Marks an open order as dead-lettered (once: ``OrderStore/markDeadLettered(_:messageID:verifying:by:)``,
    /// checking that the message is there still); returns what it found, or nil when the store
    /// could not say. Without `messageID`, the order's own.
    func markDeadLettered(_ orderID: String, messageID: String?) async -> DeadLetterMark? {
        do {
            var messageID = messageID
            if messageID == nil {
                guard let order = try await store.order(id: orderID) else { return .notFound }
                if order.status.isTerminal { return .finished(order) }
                // Stamped already, and not sent back since (a redrive clears the stamp): a read
                // is enough. Every sweep pass meets a held order, and must not write each time.
                if order.deadLetteredAt != nil { return .marked(order) }
                messageID = order.messageID
            }
            return try await store.markDeadLettered(orderID, messageID: messageID ?? "(unknown)", verifying: true, by: configuration.actor)
        } catch {
            logger.debug("could not mark an order dead-lettered", metadata: ["order_id": "\(orderID)", "error": "\(error)"])
            return nil
        }
    }

    /// Settles the order of a dead letter now, whatever its hold: an operator's "settle now".
    /// Charged → completed, never charged → voided and failed. Throws when the gateway cannot
    /// say (the order is then unchanged).
    public func settleNow(_ orderID: String, by actor: String) async throws -> OrderSettler.Settlement {
        let settlement = try await settler.settle(orderID, why: "settled by an operator after its message was dead-lettered",
                                                  by: "an operator (\(actor))")
        backoffs.withLock { _ = $0.removeValue(forKey: orderID) }
        if case let .settled(order) = settlement {
            processed.record()
            orderMetrics.recordFinished(order.status, by: .reconciler)
        }
        return settlement
    }

    private func settle(_ orderID: String, why: String) async -> Settled {
        let time = configuration.time
        if let backoff = backoffs.withLock({ $0[orderID] }), backoff.until > time.nowMillis() { return .unresolved }
        do {
            let settlement = try await settler.settle(orderID, why: why, by: configuration.actor)
            backoffs.withLock { _ = $0.removeValue(forKey: orderID) }
            switch settlement {
            case let .settled(order):
                processed.record()
                orderMetrics.recordFinished(order.status, by: .reconciler)
                logger.notice("order settled", metadata: ["order_id": "\(orderID)", "status": "\(order.status.rawValue)", "why": "\(why)"])
                return order.status == .completed ? .completed : .failed
            case .alreadyFinal, .notFound:
                return .unchanged
            }
        } catch {
            let failures = backoffs.withLock { backoffs -> Int in
                if backoffs.count >= Self.backoffCapacity { backoffs.removeAll() }
                let failures = (backoffs[orderID]?.failures ?? 0) + 1
                let delay = min(Self.longestRetry, Self.firstRetry * (1 << min(failures - 1, 16)))
                backoffs[orderID] = Backoff(until: time.nowMillis() + delay.asMilliseconds, failures: failures)
                return failures
            }
            if failures == 1 || failures.isMultiple(of: 10) {
                logger.warning("could not settle order; will try again", metadata: [
                    "order_id": "\(orderID)", "error": "\(error)", "failures": "\(failures)"])
            }
            return .unresolved
        }
    }

    // MARK: Dead letters

    /// How long a dead letter stays hidden while it is being handled.
    static let handlingLease: Duration = .seconds(60)

    private func deadLetterLoop() async {
        guard let deadLetterQueue else { return }
        while !Task.isCancelled {
            let messages: [ReceivedMessage]
            do {
                messages = try await deadLetterQueue.receive(maxMessages: QueueLimits.maxBatchSize, wait: QueueLimits.maxWait,
                                                             visibilityTimeout: Self.handlingLease)
            } catch is CancellationError {
                return
            } catch {
                logger.error("dead-letter receive failed", metadata: ["error": "\(error)"])
                do { try await Task.sleep(for: .seconds(1)) } catch { return }
                continue
            }
            // Each message on its own: one that fails does not hold up the others.
            for message in messages {
                // SQS caps a message's hidden time at 12 h from its receive: the park stays inside it.
                let longest = QueueLimits.maxVisibilityTimeout - Self.handlingLease - .seconds(60)
                var park = longest
                if let orderID = PaymentMessage.orderID(in: message.body) {
                    // Marked (its hold starts, and its history says so) the first time it is seen.
                    switch await markDeadLettered(orderID, messageID: message.messageID) {
                    case let .marked(order)?:
                        if let until = holdEnd(of: order) {
                            // Held for an operator: looked at again when the hold ends.
                            park = min(longest, .milliseconds(max(until - WallClock.nowMillis(), 0)) + .seconds(1))
                        } else {
                            park = await settleDeadLetter(orderID)
                        }
                    case .finished?, .notFound?:
                        break  // nothing to settle: parked for inspection
                    case .notDeadLettered?:
                        continue  // sent back meanwhile: this delivery is stale
                    case nil where configuration.deadLetterHold > .zero:
                        // The store did not answer: with a hold, nothing is settled before it is known.
                        park = configuration.deadLetterRetry
                    case nil:
                        park = await settleDeadLetter(orderID)
                    }
                }
                // Settled (or not an order at all): parked for inspection, hidden for ~12 h at a time.
                try? await deadLetterQueue.changeVisibility(message.receiptHandle, timeout: park)
            }
        }
    }

    /// Settles a dead letter's order now; returns how long its message is parked: until the
    /// next try when the gateway could not answer, else for inspection.
    private func settleDeadLetter(_ orderID: String) async -> Duration {
        // (Its receive count here also counts this queue's own deliveries: not quoted.)
        let settled = await settle(orderID, why: "payment abandoned: its message was dead-lettered after its last allowed delivery")
        return settled == .unresolved ? configuration.deadLetterRetry : QueueLimits.maxVisibilityTimeout - Self.handlingLease - .seconds(60)
    }
}
