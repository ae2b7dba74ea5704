@testable import FlashAWS
import FlashQueue
import Foundation
import Testing
import FlashTestSupport

/// The local AWS endpoint the test command started (moto_server), if any.
/// ``SQSMessageQueue`` against a real local SQS endpoint (moto). Where moto departs from AWS, the
/// test says so.
@Suite("SQS queue on a local endpoint", .enabled(if: TestAWS.endpoint != nil))
struct SQSQueueTests {
    let queues = SQSQueues(configuration: TestAWS.configuration)

    @Test func sendReceiveDeleteRoundTrip() async throws {
        let queue = try await queues.create(TestAWS.name("orders"), attributes: QueueAttributes(visibilityTimeout: .seconds(30)))
        let id = try await queue.send("hello ✓ \"quoted\"")
        let received = try await queue.receive(maxMessages: 10, wait: .seconds(1), visibilityTimeout: nil)
        #expect(received.map(\.messageID) == [id])
        #expect(received.first?.body == "hello ✓ \"quoted\"")
        #expect(received.first?.receiveCount == 1)
        #expect(received.first.map { $0.sentAtMillis > 0 } == true)
        // Leased: not delivered again while the lease runs.
        #expect(try await queue.receive(maxMessages: 10, wait: .zero).isEmpty)
        #expect(try await queue.statistics().inFlight == 1)
        try await queue.delete(try #require(received.first).receiptHandle)
        #expect(try await queue.statistics().total == 0)
    }

    @Test func batchesSendAndDeleteTogetherAndABadReceiptFailsAlone() async throws {
        let queue = try await queues.create(TestAWS.name("batch"), attributes: QueueAttributes())
        let ids = try await queue.sendBatch((0..<10).map { OutgoingMessage("m\($0)") })
        #expect(Set(ids).count == 10)
        var received: [ReceivedMessage] = []
        while received.count < 10 {
            let page = try await queue.receive(maxMessages: 10, wait: .seconds(1), visibilityTimeout: nil)
            if page.isEmpty { break }
            received += page
        }
        #expect(Set(received.map(\.messageID)) == Set(ids))
        let results = try await queue.deleteBatch(received.prefix(9).map(\.receiptHandle) + [ReceiptHandle("garbage")])
        #expect(results.prefix(9).allSatisfy { if case .success = $0 { true } else { false } })
        #expect(results.last.map { if case .failure(.receiptHandleInvalid("garbage")) = $0 { true } else { false } } == true)
        #expect(try await queue.statistics().total == 1)
    }

    @Test func aMessageReceivedTooOftenMovesToTheDeadLetterQueue() async throws {
        let name = TestAWS.name("redrive")
        let queue = try await queues.create(name, attributes: QueueAttributes(visibilityTimeout: .seconds(30), maxReceiveCount: 2))
        _ = try await queue.send("poison")
        for attempt in 1...2 {
            let message = try #require(try await queue.receive(maxMessages: 1, wait: .seconds(1), visibilityTimeout: nil).first)
            #expect(message.receiveCount == attempt)
            try await queue.changeVisibility(message.receiptHandle, timeout: .zero)
        }
        // The third receive finds it gone to the dead-letter queue (SQS's own redrive policy).
        #expect(try await queue.receive(maxMessages: 1, wait: .seconds(1), visibilityTimeout: nil).isEmpty)
        #expect(try await queue.statistics().deadLettered == 1)
        // Opened again by name, the queue finds its dead-letter queue from the redrive policy.
        let reopened = try await queues.open(name)
        #expect(try await reopened.statistics().deadLettered == 1)
    }

    @Test func badInputIsRefusedAndNothingIsSent() async throws {
        let queue = try await queues.create(TestAWS.name("bad"), attributes: QueueAttributes(maxBodyBytes: 1024))
        await #expect(throws: QueueError.invalidMessageContents(offset: 3)) { try await queue.send("abc\u{0}def") }
        await #expect(throws: QueueError.bodyTooLarge(bytes: 2000, limit: 1024)) { try await queue.send(String(repeating: "x", count: 2000)) }
        await #expect(throws: QueueError.self) { try await queue.receive(maxMessages: 11, wait: .zero) }
        #expect(try await queue.statistics().total == 0)
        await #expect(throws: QueueError.queueDoesNotExist("no-such-queue")) { try await queues.open("no-such-queue") }
    }

    @Test func aLongPollReturnsAsSoonAsAMessageArrives() async throws {
        let queue = try await queues.create(TestAWS.name("poll"), attributes: QueueAttributes())
        let started = ContinuousClock.now
        async let received = queue.receive(maxMessages: 1, wait: .seconds(20), visibilityTimeout: nil)
        try await Task.sleep(for: .milliseconds(500))
        _ = try await queue.send("wake")
        #expect(try await received.map(\.body) == ["wake"])
        // Well before the 20 s wait ran out (generous: moto and this box may be loaded).
        #expect(ContinuousClock.now - started < .seconds(15))
    }
}

@Suite("SNS envelopes")
struct SNSEnvelopeTests {
    @Test func aNotificationIsUnwrappedAndAnythingElseIsLeftAlone() {
        let envelope = #"{"Type":"Notification","MessageId":"1","TopicArn":"arn:aws:sns:us-east-1:1:orders","Message":"{\"order_id\":\"o-1\"}"}"#
        #expect(SNSEnvelope.unwrap(envelope) == #"{"order_id":"o-1"}"#)
        #expect(SNSEnvelope.unwrap(#"{"order_id":"o-1"}"#) == #"{"order_id":"o-1"}"#)
        #expect(SNSEnvelope.unwrap(#"{"Type":"SubscriptionConfirmation","Message":"x"}"#) == #"{"Type":"SubscriptionConfirmation","Message":"x"}"#)
        #expect(SNSEnvelope.unwrap("plain") == "plain")
    }
}
