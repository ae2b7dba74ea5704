import FlashCore
import FlashOutbox
import FlashQueue
import FlashSQLite
import Foundation
import Logging
import Synchronization
import Testing

/// The relay's lease on the outbox, on time the test controls: a publish in progress keeps its
/// batch however long it takes, and the batch of a relay that died is another's a lease later.
@Suite("Outbox relay")
struct OutboxRelayTests {
    @Test func aSlowPublishKeepsItsBatchAndADeadRelaysBatchIsTakenOverWithinALease() async throws {
        let time = ManualTime()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("relay-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let database = try SQLiteDatabase(path: directory.appendingPathComponent("f.db").path, time: time.source)
        let queue = try await database.createQueue("outbox", attributes: QueueAttributes(maxReceiveCount: 0, retention: QueueLimits.maxRetention))
        _ = try await queue.send("order-1")
        let outbox = CountingQueue(queue)
        let publisher = HeldPublisher()
        defer { publisher.release() }
        // The default lease, on the test's clock; the beats every 20 ms of real time, so that
        // the test decides, by moving its clock, how much of the lease has passed between them.
        let relay = OutboxRelay(configuration: .init(concurrency: 1, heartbeat: .milliseconds(20), wait: .zero), outbox: outbox,
                                destination: publisher, logger: Logger(label: "test"))
        let lease = relay.configuration.lease
        let publishing = Task { try await relay.relayOnce() }
        try #require(try await Self.until { publisher.held > 0 }, "the relay never published")

        // Twice the lease passes while the publish is held; after each half, two beats: the
        // batch stays this relay's.
        for _ in 0..<4 {
            let before = outbox.extensions
            time.advance(by: lease / 2)
            try #require(try await Self.until { outbox.extensions >= before + 2 }, "the relay did not extend its lease while publishing")
            #expect(try await queue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(60)).isEmpty)
        }

        // The relay dies (its task ends; the publish never returns): one lease later, another
        // relay takes the batch.
        publishing.cancel()
        let last = outbox.extensions
        try await Task.sleep(for: .milliseconds(100))
        #expect(outbox.extensions <= last + 1, "a cancelled relay kept extending its lease")
        // (A beat the cancelled relay was already running when it was cancelled may still land
        // after the clock moves, on a busy machine: it extends from the new time, so the clock
        // moves a lease again until the batch is free. A relay that kept beating never frees it.)
        var taken: [ReceivedMessage] = []
        let deadline = ContinuousClock.now + .seconds(60)
        while taken.isEmpty, ContinuousClock.now < deadline {
            time.advance(by: lease + .milliseconds(1))
            taken = try await queue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(60))
            if taken.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(taken.map(\.body) == ["order-1"])
        #expect(lease <= .seconds(15), "a dead relay's batch waits \(lease) for another")
        publisher.release()
        _ = try? await publishing.value
        try database.close()
    }

    /// Whether `condition` came to hold within a minute of real time (a bound, not a measure: it
    /// holds within milliseconds when the relay works).
    static func until(_ condition: () -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(60)
        while !condition() {
            guard ContinuousClock.now < deadline else { return false }
            try await Task.sleep(for: .milliseconds(5))
        }
        return true
    }

    /// A destination that holds every publish until released, ignoring cancellation (a process
    /// frozen or killed mid-publish).
    final class HeldPublisher: MessagePublisher {
        private let state = Mutex((held: 0, released: false))
        var destination: String { "held" }
        var held: Int { state.withLock { $0.held } }

        func release() { state.withLock { $0.released = true } }

        func publishBatch(_ bodies: [String]) async throws -> [Bool] {
            state.withLock { $0.held += 1 }
            while !state.withLock({ $0.released }) { try? await Task.sleep(for: .milliseconds(5)) }
            return bodies.map { _ in true }
        }
    }

    /// A queue that counts the lease extensions asked of it.
    final class CountingQueue: MessageQueue {
        let inner: any MessageQueue
        private let count = Atomic<Int>(0)
        init(_ inner: any MessageQueue) { self.inner = inner }
        var extensions: Int { count.load(ordering: .relaxed) }

        var name: String { inner.name }
        func send(_ body: String, delay: Duration) async throws -> String { try await inner.send(body, delay: delay) }
        func sendBatch(_ messages: [OutgoingMessage]) async throws -> [String] { try await inner.sendBatch(messages) }
        func receive(maxMessages: Int, wait: Duration, visibilityTimeout: Duration?) async throws -> [ReceivedMessage] {
            try await inner.receive(maxMessages: maxMessages, wait: wait, visibilityTimeout: visibilityTimeout)
        }
        func changeVisibility(_ receipt: ReceiptHandle, timeout: Duration) async throws {
            try await inner.changeVisibility(receipt, timeout: timeout)
            count.add(1, ordering: .relaxed)
        }
        func delete(_ receipt: ReceiptHandle) async throws { try await inner.delete(receipt) }
        func deleteBatch(_ receipts: [ReceiptHandle]) async throws -> [Result<Void, QueueError>] { try await inner.deleteBatch(receipts) }
        func returnUntried(_ receipts: [ReceiptHandle]) async throws -> [Bool] { try await inner.returnUntried(receipts) }
        func sweepExpired() async throws -> Int { try await inner.sweepExpired() }
        func purge() async throws { try await inner.purge() }
        func statistics() async throws -> QueueStatistics { try await inner.statistics() }
        func countVisible(sentAtOrBefore millis: Int64) async throws -> Int { try await inner.countVisible(sentAtOrBefore: millis) }
    }
}
