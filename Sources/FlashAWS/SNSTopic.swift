import FlashQueue
import Foundation

/// An SNS topic: what the API publishes orders to when it runs the seeds' topology (SNS → SQS
/// fan-out). Publishes through SNS's query protocol (Publish, PublishBatch).
public struct SNSTopic: MessagePublisher {
    /// The topic's ARN.
    public let arn: String
    let client: AWSQueryClient

    init(arn: String, client: AWSQueryClient) {
        self.arn = arn
        self.client = client
    }

    public var destination: String { arn }

    /// Publishes one message; returns SNS's message id.
    public func publish(_ body: String) async throws -> String {
        struct Result: Decodable { var MessageId: String }
        return try await client.call("Publish", [("TopicArn", arn), ("Message", body)], as: Result.self).MessageId
    }

    /// PublishBatch: each entry's own outcome (an entry SNS refuses is reported, not thrown).
    public func publishBatch(_ bodies: [String]) async throws -> [Bool] {
        guard !bodies.isEmpty else { return [] }
        try QueueLimits.validateBatchCount(bodies.count)
        struct Entry: Decodable { var Id: String }
        struct Result: Decodable {
            var Successful: QueryList<Entry>?
        }
        var parameters = [("TopicArn", arn)]
        for (index, body) in bodies.enumerated() {
            parameters.append(("PublishBatchRequestEntries.member.\(index + 1).Id", "m\(index)"))
            parameters.append(("PublishBatchRequestEntries.member.\(index + 1).Message", body))
        }
        let answer = try await client.call("PublishBatch", parameters, as: Result.self)
        let succeeded = Set((answer.Successful?.member ?? []).map(\.Id))
        return bodies.indices.map { succeeded.contains("m\($0)") }
    }
}

/// Creates and opens SNS topics and their SQS subscriptions: what `flashsale setup-aws` does,
/// as the seeds did with Terraform.
public struct SNSTopics: Sendable {
    let client: AWSQueryClient

    public init(configuration: AWSConfiguration) {
        client = AWSQueryClient(configuration: configuration, service: "sns", version: "2010-03-31")
    }

    /// Creates `name`, or returns it when it exists (CreateTopic is idempotent).
    public func create(_ name: String) async throws -> SNSTopic {
        struct Result: Decodable { var TopicArn: String }
        let arn = try await client.call("CreateTopic", [("Name", name)], as: Result.self).TopicArn
        return SNSTopic(arn: arn, client: client)
    }

    /// The topic with this ARN, unchecked.
    public func topic(arn: String) -> SNSTopic {
        SNSTopic(arn: arn, client: client)
    }

    /// The topic with this ARN, after checking that SNS knows it (GetTopicAttributes); a topic
    /// SNS does not know is an ``AWSError`` with code `NotFound`.
    public func open(arn: String) async throws -> SNSTopic {
        try await client.call("GetTopicAttributes", [("TopicArn", arn)])
        return SNSTopic(arn: arn, client: client)
    }

    /// Deletes the topic and its subscriptions (succeeds for a topic that is already gone).
    public func delete(_ topic: SNSTopic) async throws {
        try await client.call("DeleteTopic", [("TopicArn", topic.arn)])
    }

    /// Subscribes an SQS queue to the topic with raw message delivery (the order's JSON arrives
    /// as the message body, not wrapped in an SNS envelope); idempotent, as Subscribe is.
    /// Returns the subscription's ARN.
    /// With `raw` false, SNS wraps each message in its JSON envelope, which
    /// ``SQSMessageQueue`` unwraps on receipt, as the seeds' workers did.
    @discardableResult
    public func subscribe(_ queue: SQSMessageQueue, to topic: SNSTopic, raw: Bool = true) async throws -> String {
        struct Result: Decodable { var SubscriptionArn: String }
        let queueARN = try await queue.arn()
        return try await client.call("Subscribe", [
            ("TopicArn", topic.arn), ("Protocol", "sqs"), ("Endpoint", queueARN), ("ReturnSubscriptionArn", "true"),
            ("Attributes.entry.1.key", "RawMessageDelivery"), ("Attributes.entry.1.value", raw ? "true" : "false"),
        ], as: Result.self).SubscriptionArn
    }
}
