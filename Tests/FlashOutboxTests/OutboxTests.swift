import FlashAWS
import FlashCore
import FlashOrders
@testable import FlashOutbox
import FlashQueue
import FlashPayments
import FlashSQLite
import FlashWorkers
import Foundation
import Logging
import Testing
import FlashTestSupport

/// The transactional outbox on a real backend (an SQLite file) with a real SQS queue (the local
/// endpoint): what the relay publishes, and what the reconciler may take as orphaned.
@Suite("Outbox to SQS", .enabled(if: TestAWS.endpoint != nil))
struct OutboxTests {
    static func backend() async throws -> SQLiteBackend {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var configuration = SQLiteBackend.Configuration(path: directory.appendingPathComponent("f.db").path,
                                                        paymentsQueue: QueueAttributes(maxReceiveCount: 0, retention: QueueLimits.maxRetention))
        configuration.topicName = "outbox-orders"
        configuration.paymentsQueueName = "outbox"
        return try await SQLiteBackend(configuration: configuration)
    }

    static func order(_ n: Int) -> NewOrder {
        NewOrder(id: TimeOrderedID.make(), customerID: "c\(n)", items: [OrderItem(productID: "P", quantity: 1, price: 10)],
                 channel: .async, idempotencyKey: nil)
    }

    @Test func theRelayPublishesEveryOrderOnceAndOnlyRelayedOldOrdersCanBeOrphans() async throws {
        let backend = try await Self.backend()
        let queue = try await SQSQueues(configuration: TestAWS.configuration).create(TestAWS.name("payments"), attributes: QueueAttributes())
        // Retention 0 and no grace: every relayed order counts as old enough to be an orphan.
        let store = OutboxOrderStore(local: backend.orders, paymentsQueue: queue, retention: .zero, fence: PurgeFence(registry: backend.fleet),
                                     retentionGrace: .zero)
        var ids: [String] = []
        for n in 0..<25 { ids.append(try await store.placeQueued(Self.order(n)).order.id) }
        // Committed with their outbox rows, nothing published yet: no orphan, nothing in SQS.
        #expect(try await store.outbox.statistics().visible == 25)
        #expect(try await store.orphans(after: 0, limit: 100).orphans.isEmpty)
        #expect(try await queue.statistics().visible == 0)

        let relay = OutboxRelay(configuration: .init(concurrency: 1, wait: .zero), outbox: store.outbox, destination: queue,
                                logger: Logger(label: "test"))
        var outcomes: [OutboxRelay.Outcome] = []
        while true {
            let outcome = try await relay.relayOnce()
            if outcome == .idle { break }
            outcomes.append(outcome)
        }
        #expect(outcomes == [.published(10), .published(10), .published(5)])
        #expect(try await store.outbox.statistics().total == 0)
        var bodies: [String] = []
        while bodies.count < 25 {
            let page = try await queue.receive(maxMessages: 10, wait: .seconds(1), visibilityTimeout: .seconds(60))
            if page.isEmpty { break }
            bodies += page.map(\.body)
        }
        #expect(Set(bodies.compactMap(PaymentMessage.orderID(in:))) == Set(ids))
        #expect(bodies.count == 25)

        // Relayed and past the (zero) retention: orphans. With SQS's real retention: none.
        #expect(Set(try await store.orphans(after: 0, limit: 100).orphans.map(\.orderID)) == Set(ids))
        let patient = OutboxOrderStore(local: backend.orders, paymentsQueue: queue, retention: .seconds(4 * 86_400),
                                       fence: PurgeFence(registry: backend.fleet))
        #expect(try await patient.orphans(after: 0, limit: 100).orphans.isEmpty)
        try await backend.shutdown()
    }

    /// SQS goes on deleting for up to 60 s after a PurgeQueue, messages sent meanwhile included;
    /// the purge was once known only to the process that made it, by the orders' placing time.
    /// Now: no relay publishes until the purge is settled and its window has passed (an order
    /// placed meanwhile is charged after it, not lost with the backlog); every process takes
    /// what was relayed before it for orphans (and no more), and settles them.
    @Test func aPurgeHoldsPublishingAndEveryProcessSettlesWhatItOrphaned() async throws {
        let backend = try await Self.backend()
        let queue = try await SQSQueues(configuration: TestAWS.configuration).create(TestAWS.name("payments"), attributes: QueueAttributes())
        // Two processes on one database: each with its own view of the fleet's purge record.
        func fence() -> PurgeFence {
            PurgeFence(registry: backend.fleet, window: .seconds(1), settleAfter: .seconds(1), margin: .milliseconds(200), freshness: .zero)
        }
        let purging = OutboxOrderStore(local: backend.orders, paymentsQueue: queue, retention: .seconds(4 * 86_400), fence: fence())
        let other = OutboxOrderStore(local: backend.orders, paymentsQueue: queue, retention: .seconds(4 * 86_400), fence: fence())
        let relay = OutboxRelay(configuration: .init(concurrency: 1, wait: .zero), outbox: other.outbox, destination: queue,
                                fence: other.fence, logger: Logger(label: "test"))
        var relayed: [String] = []
        for n in 0..<5 { relayed.append(try await purging.placeQueued(Self.order(n)).order.id) }
        while try await relay.relayOnce() != .idle {}
        #expect(try await other.orphans(after: 0, limit: 100).orphans.isEmpty)

        try await purging.paymentsQueue.purge()
        var held: [String] = []
        for n in 5..<8 { held.append(try await purging.placeQueued(Self.order(n)).order.id) }
        // Held: nothing published while the purge is not settled, however long that takes.
        #expect(try await relay.relayOnce() == .idle)
        #expect(try await other.outbox.statistics().visible == 3)
        // The other process knows of the purge: the relayed orders are its orphans, the held ones not.
        #expect(Set(try await other.orphans(after: 0, limit: 100).orphans.map(\.orderID)) == Set(relayed))

        // Its reconciler settles them (no charge was made: failed, units back).
        let gateway = SimulatedPaymentGateway(configuration: .init(latency: .fixed(.milliseconds(1))), ledger: SQLitePaymentLedger(database: backend.database))
        let reconciler = Reconciler(configuration: .init(interval: .seconds(3600), pageSize: 100), store: other,
                                    settler: OrderSettler(store: other, gateway: gateway), paymentsQueue: other.paymentsQueue,
                                    deadLetterQueue: nil, processed: RateMeter(), logger: Logger(label: "test"))
        await reconciler.sweep()
        for id in relayed { #expect(try await other.order(id: id)?.status == .failed) }
        for id in held { #expect(try await other.order(id: id)?.status == .pending) }
        #expect(try await other.fence.current()?.settled == false)
        // A pass that starts past `settleAfter` settles the purge; publishing resumes after its margin.
        let deadline = ContinuousClock.now + .seconds(60)
        while try await other.fence.current()?.settled != true, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            await reconciler.sweep()
        }
        #expect(try await other.fence.current()?.settled == true)
        var published = 0
        while published < 3, ContinuousClock.now < deadline {
            if case .published(let count) = try await relay.relayOnce() { published += count }
        }
        #expect(published == 3)
        var bodies: [String] = []
        while bodies.count < 3, ContinuousClock.now < deadline {
            bodies += try await queue.receive(maxMessages: 10, wait: .seconds(1), visibilityTimeout: .seconds(60)).map(\.body)
        }
        #expect(Set(bodies.compactMap(PaymentMessage.orderID(in:))) == Set(held))
        // Settled: the held orders, relayed now, are not orphans of the old purge.
        #expect(try await other.orphans(after: 0, limit: 100).orphans.isEmpty)
        #expect(try await purging.orphans(after: 0, limit: 100).orphans.isEmpty)
        try await backend.shutdown()
    }

    /// A relay whose publish a purge overlapped cannot know whether SQS kept the batch: it
    /// keeps it in the outbox, so it is published again after the purge, and its orders are
    /// neither orphans nor lost. A PurgeQueue that fails orphans nothing and holds nothing.
    @Test func aPublishOverlappedByAPurgeIsSentAgainAndAFailedPurgeOrphansNothing() async throws {
        let backend = try await Self.backend()
        let queue = try await SQSQueues(configuration: TestAWS.configuration).create(TestAWS.name("payments"), attributes: QueueAttributes())
        let fence = PurgeFence(registry: backend.fleet, window: .seconds(1), settleAfter: .seconds(1), margin: .milliseconds(200), freshness: .zero)
        let store = OutboxOrderStore(local: backend.orders, paymentsQueue: queue, retention: .seconds(4 * 86_400), fence: fence)
        var ids: [String] = []
        for n in 0..<2 { ids.append(try await store.placeQueued(Self.order(n)).order.id) }
        // The batch reaches SQS, then the purge starts (and deletes it) before the relay deletes it from the outbox.
        let overlapped = OutboxRelay(configuration: .init(concurrency: 1, wait: .zero), outbox: store.outbox,
                                     destination: PurgedWhilePublishing(queue: queue, store: store), fence: fence, logger: Logger(label: "test"))
        #expect(try await overlapped.relayOnce() == .idle)
        #expect(try await store.outbox.statistics().total == 2)
        #expect(try await store.orphans(after: 0, limit: 100).orphans.isEmpty)
        // Once the purge is settled and its window over, the batch goes out again.
        let gateway = SimulatedPaymentGateway(configuration: .init(latency: .fixed(.milliseconds(1))), ledger: SQLitePaymentLedger(database: backend.database))
        let reconciler = Reconciler(configuration: .init(interval: .seconds(3600), pageSize: 100), store: store,
                                    settler: OrderSettler(store: store, gateway: gateway), paymentsQueue: store.paymentsQueue,
                                    deadLetterQueue: nil, processed: RateMeter(), logger: Logger(label: "test"))
        let relay = OutboxRelay(configuration: .init(concurrency: 1, wait: .zero), outbox: store.outbox, destination: queue, fence: fence,
                                logger: Logger(label: "test"))
        let deadline = ContinuousClock.now + .seconds(60)
        var published = 0
        while published < 2, ContinuousClock.now < deadline {
            await reconciler.sweep()
            if case .published(let count) = try await relay.relayOnce() { published += count }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(published == 2)
        for id in ids { #expect(try await store.order(id: id)?.status == .pending) }
        var bodies: [String] = []
        while bodies.count < 2, ContinuousClock.now < deadline {
            bodies += try await queue.receive(maxMessages: 10, wait: .seconds(1), visibilityTimeout: .seconds(60)).map(\.body)
        }
        #expect(Set(bodies.compactMap(PaymentMessage.orderID(in:))) == Set(ids))

        // A PurgeQueue that SQS refuses: nothing orphaned, nothing held.
        await #expect(throws: QueueError.self) { try await fence.purge { throw QueueError.queueDoesNotExist("gone") } }
        #expect(try await fence.current()?.settled == true)
        #expect(await fence.holdsPublishing().held == false)
        #expect(try await store.orphans(after: 0, limit: 100).orphans.isEmpty)
        // One that got no answer may have happened: taken as done, held; a second purge meanwhile is refused.
        struct NoAnswer: Error {}
        await #expect(throws: NoAnswer.self) { try await fence.purge { throw NoAnswer() } }
        #expect(try await fence.current()?.returned == true)
        #expect(try await fence.current()?.settled == false)
        #expect(await fence.holdsPublishing().held)
        await #expect(throws: PurgeInProgress.self) { try await fence.purge {} }
        try await backend.shutdown()
    }

    @Test func aDeliveryGivenBackBeforeItsOrderWasTouchedStaysHiddenForABackoff() async throws {
        let backend = try await Self.backend()
        let queue = try await SQSQueues(configuration: TestAWS.configuration).create(TestAWS.name("payments"), attributes: QueueAttributes())
        let store = OutboxOrderStore(local: backend.orders, paymentsQueue: queue, retention: .seconds(4 * 86_400),
                                       fence: PurgeFence(registry: backend.fleet))
        _ = try await queue.sendBatch([OutgoingMessage("untouched"), OutgoingMessage("prepared")])
        var taken: [ReceivedMessage] = []
        while taken.count < 2 { taken += try await queue.receive(maxMessages: 10, wait: .seconds(1), visibilityTimeout: .seconds(60)) }
        let untouched = try #require(taken.first { $0.body == "untouched" })
        let prepared = try #require(taken.first { $0.body == "prepared" })
        try await store.returnUntried([UntriedDelivery(orderID: nil, receipt: untouched.receiptHandle),
                                       UntriedDelivery(orderID: "some-order", receipt: prepared.receiptHandle)])
        // The prepared one is back at once; the untouched one waits (SQS counted its receive).
        let again = try await queue.receive(maxMessages: 10, wait: .seconds(1), visibilityTimeout: .seconds(60))
        #expect(again.map(\.body) == ["prepared"])
        try await backend.shutdown()
    }
}

/// SQS, with a purge of it started (through the outbox store) right after each batch is accepted.
struct PurgedWhilePublishing: MessagePublisher {
    let queue: SQSMessageQueue
    let store: OutboxOrderStore
    var destination: String { queue.destination }
    func publishBatch(_ bodies: [String]) async throws -> [Bool] {
        let accepted = try await queue.publishBatch(bodies)
        try await store.paymentsQueue.purge()
        return accepted
    }
}
