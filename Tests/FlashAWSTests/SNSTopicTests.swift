@testable import FlashAWS
import FlashQueue
import Foundation
import Testing
import FlashTestSupport

/// ``SNSTopic`` (SNS's query protocol, answers read with XMLCoder) against the local endpoint,
/// delivering to real SQS queues.
@Suite("SNS topic on a local endpoint", .enabled(if: TestAWS.endpoint != nil))
struct SNSTopicTests {
    let topics = SNSTopics(configuration: TestAWS.configuration)
    let queues = SQSQueues(configuration: TestAWS.configuration)

    /// Receives until `count` messages came or 10 s passed.
    func drain(_ queue: SQSMessageQueue, count: Int) async throws -> [ReceivedMessage] {
        var received: [ReceivedMessage] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while received.count < count, ContinuousClock.now < deadline {
            received += try await queue.receive(maxMessages: 10, wait: .seconds(1), visibilityTimeout: .seconds(60))
        }
        return received
    }

    @Test func creatingAndSubscribingTwiceChangesNothingAndABatchArrivesRaw() async throws {
        let name = TestAWS.name("orders")
        let topic = try await topics.create(name)
        #expect(topic.arn.hasPrefix("arn:aws:sns:us-east-1:"))
        #expect(topic.arn.hasSuffix(":\(name)"))
        #expect(try await topics.create(name).arn == topic.arn)
        let queue = try await queues.create(TestAWS.name("payments"), attributes: QueueAttributes())
        try await queues.allowPublishing(from: topic.arn, to: queue)
        let subscription = try await topics.subscribe(queue, to: topic)
        #expect(try await topics.subscribe(queue, to: topic) == subscription)

        let bodies = (0..<10).map { #"{"order_id":"o-\#($0)","note":"ünïcode & <xml> \"quotes\""}"# }
        #expect(try await topic.publishBatch(bodies) == Array(repeating: true, count: 10))
        let one = try await topic.publish(#"{"order_id":"single"}"#)
        #expect(!one.isEmpty)
        let received = try await drain(queue, count: 11)
        // Raw delivery: the bodies exactly as published, once each (no SNS envelope).
        #expect(Set(received.map(\.body)) == Set(bodies + [#"{"order_id":"single"}"#]))
        #expect(received.count == 11)
    }

    @Test func aNonRawSubscriptionIsUnwrappedOnReceipt() async throws {
        let topic = try await topics.create(TestAWS.name("wrapped"))
        let queue = try await queues.create(TestAWS.name("wrapped"), attributes: QueueAttributes())
        try await topics.subscribe(queue, to: topic, raw: false)
        _ = try await topic.publish(#"{"order_id":"o-9"}"#)
        let received = try await drain(queue, count: 1)
        #expect(received.map(\.body) == [#"{"order_id":"o-9"}"#])
    }

    @Test func anUnknownTopicAndAnOversizedBatchAreClearErrors() async throws {
        let missing = "arn:aws:sns:us-east-1:123456789012:" + TestAWS.name("missing")
        await #expect { try await topics.open(arn: missing) } throws: { error in
            (error as? AWSError)?.code == "NotFound" && (error as? AWSError)?.isTransient == false
        }
        await #expect { _ = try await topics.topic(arn: missing).publish("x") } throws: { error in
            (error as? AWSError)?.code == "NotFound"
        }
        let topic = try await topics.create(TestAWS.name("batch"))
        await #expect(throws: QueueError.invalidBatchSize(11)) { _ = try await topic.publishBatch(Array(repeating: "x", count: 11)) }
    }

    @Test func queryParametersAreEncodedAsAWSSignsThem() {
        #expect(AWSQueryClient.formEncoded([("Message", "a b&c=d/é~")]) == "Message=a%20b%26c%3Dd%2F%C3%A9~")
    }
}
