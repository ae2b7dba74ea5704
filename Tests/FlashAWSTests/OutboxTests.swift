import FlashAWS
import FlashCore
import FlashOrders
import FlashOutbox
import FlashQueue
import FlashSQLite
import Foundation
import Logging
import Testing

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
        let store = OutboxOrderStore(local: backend.orders, paymentsQueue: queue, retention: .zero, retentionGrace: .zero)
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
        let patient = OutboxOrderStore(local: backend.orders, paymentsQueue: queue, retention: .seconds(4 * 86_400))
        #expect(try await patient.orphans(after: 0, limit: 100).orphans.isEmpty)
        try await backend.shutdown()
    }

    @Test func aDeliveryGivenBackBeforeItsOrderWasTouchedStaysHiddenForABackoff() async throws {
        let backend = try await Self.backend()
        let queue = try await SQSQueues(configuration: TestAWS.configuration).create(TestAWS.name("payments"), attributes: QueueAttributes())
        let store = OutboxOrderStore(local: backend.orders, paymentsQueue: queue, retention: .seconds(4 * 86_400))
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
