import FlashQueue
import Foundation
import NIOCore

/// Opens and creates SQS queues as ``SQSMessageQueue``s: what `flashsale setup-aws` and the
/// tests use; serve and worker open the queues setup made.
public struct SQSQueues: Sendable {
    let client: AWSJSONClient

    public init(configuration: AWSConfiguration) {
        client = AWSJSONClient(configuration: configuration, service: "sqs", targetPrefix: "AmazonSQS")
    }

    /// Creates `name` (and, when `attributes` redrive, its dead-letter queue first) with the
    /// attributes given, or opens it when it exists with the same ones (CreateQueue is idempotent).
    public func create(_ name: String, attributes: QueueAttributes) async throws -> SQSMessageQueue {
        try attributes.validate()
        var sqsAttributes: [String: String] = [
            "VisibilityTimeout": String(SQSMessageQueue.seconds(attributes.visibilityTimeout)),
            "MessageRetentionPeriod": String(max(60, SQSMessageQueue.seconds(attributes.retention))),
            "DelaySeconds": String(SQSMessageQueue.seconds(attributes.deliveryDelay)),
            "MaximumMessageSize": String(min(attributes.maxBodyBytes, 1024 * 1024)),
            // Long polling by default, as the seeds set it (flashsale's receives ask for it anyway).
            "ReceiveMessageWaitTimeSeconds": "20",
        ]
        var deadLetterURL: String?
        if let deadLetterName = attributes.deadLetterQueueName(for: name) {
            // The dead letters are kept as long as SQS allows, 14 days.
            let dead = try await Self.call(client, "CreateQueue",
                                           SQS.CreateQueue(QueueName: deadLetterName, Attributes: ["MessageRetentionPeriod": "1209600"]),
                                           as: SQS.QueueURLResult.self, queue: deadLetterName)
            deadLetterURL = dead.QueueUrl
            let arn = try await SQSMessageQueue.attributes(of: dead.QueueUrl, client: client)["QueueArn"] ?? ""
            sqsAttributes["RedrivePolicy"] = #"{"deadLetterTargetArn":"\#(arn)","maxReceiveCount":"\#(attributes.maxReceiveCount)"}"#
        }
        let created = try await Self.call(client, "CreateQueue", SQS.CreateQueue(QueueName: name, Attributes: sqsAttributes),
                                          as: SQS.QueueURLResult.self, queue: name)
        return SQSMessageQueue(name: name, url: created.QueueUrl, client: client, maxBodyBytes: attributes.maxBodyBytes,
                               deadLetterURL: deadLetterURL, retention: .seconds(max(60, SQSMessageQueue.seconds(attributes.retention))))
    }

    /// Opens an existing queue by name; its dead-letter queue is read from its redrive policy.
    public func open(_ name: String) async throws -> SQSMessageQueue {
        let url = try await Self.call(client, "GetQueueUrl", SQS.GetQueueUrl(QueueName: name), as: SQS.QueueURLResult.self, queue: name).QueueUrl
        return try await open(url: url)
    }

    /// Opens an existing queue by its URL (`--queue-url`); its dead-letter queue is read from its
    /// redrive policy. Throws ``QueueError/queueDoesNotExist(_:)`` when SQS does not know it.
    public func open(url: String) async throws -> SQSMessageQueue {
        let name = url.split(separator: "/").last.map(String.init) ?? url
        let attributes = try await SQSMessageQueue.attributes(of: url, client: client)
        var deadLetterURL: String?
        if let policy = attributes["RedrivePolicy"],
           let object = try? JSONSerialization.jsonObject(with: Data(policy.utf8)) as? [String: Any],
           let arn = object["deadLetterTargetArn"] as? String, let deadName = arn.split(separator: ":").last {
            deadLetterURL = try await Self.call(client, "GetQueueUrl", SQS.GetQueueUrl(QueueName: String(deadName)),
                                                as: SQS.QueueURLResult.self, queue: String(deadName)).QueueUrl
        }
        let maxBody = attributes["MaximumMessageSize"].flatMap(Int.init) ?? QueueLimits.defaultMaxBodyBytes
        let retention = attributes["MessageRetentionPeriod"].flatMap(Int64.init).map { Duration.seconds($0) } ?? .seconds(4 * 86_400)
        return SQSMessageQueue(name: name, url: url, client: client, maxBodyBytes: maxBody, deadLetterURL: deadLetterURL, retention: retention)
    }

    /// Lets `topicARN` (SNS) send to `queue`: without this queue policy, SNS's deliveries are
    /// refused on AWS (a compatible local server may not check). Replaces the queue's policy.
    public func allowPublishing(from topicARN: String, to queue: SQSMessageQueue) async throws {
        let queueARN = try await queue.arn()
        let policy: [String: Any] = [
            "Version": "2012-10-17",
            "Statement": [[
                "Sid": "flashsale-sns-to-sqs", "Effect": "Allow", "Principal": ["Service": "sns.amazonaws.com"],
                "Action": "sqs:SendMessage", "Resource": queueARN,
                "Condition": ["ArnEquals": ["aws:SourceArn": topicARN]],
            ]],
        ]
        let text = String(decoding: try JSONSerialization.data(withJSONObject: policy, options: [.sortedKeys]), as: UTF8.self)
        _ = try await Self.call(client, "SetQueueAttributes", SQS.SetQueueAttributes(QueueUrl: queue.url, Attributes: ["Policy": text]),
                                as: SQS.Empty.self, queue: queue.name)
    }

    /// One call; a queue SQS does not know is ``QueueError/queueDoesNotExist(_:)``.
    static func call<Input: Encodable, Output: Decodable>(_ client: AWSJSONClient, _ action: String, _ input: Input, as type: Output.Type,
                                                          queue: String, timeout: TimeAmount? = nil) async throws -> Output {
        do {
            return try await client.call(action, input, as: type, timeout: timeout)
        } catch let error as AWSError where ["QueueDoesNotExist", "NonExistentQueue"].contains(error.code) {
            throw QueueError.queueDoesNotExist(queue)
        }
    }
}
