import FlashCore
import FlashQueue
import Foundation
import NIOCore

/// An SQS queue as flashsale's ``MessageQueue``: the real service (or a compatible endpoint)
/// through SQS's JSON protocol.
///
/// Where SQS's semantics differ from flashsale's own stores, SQS's hold, and this says so:
/// - durations are whole seconds (visibility, wait, delay), rounded up;
/// - a stale receipt handle may still delete (AWS documents that only the latest handle is sure
///   to work; it does not promise the others fail);
/// - a message given back untried (`returnUntried`) still counts as received toward the redrive
///   policy: SQS counts receives, not attempts;
/// - retention and dead-lettering are SQS's own (``sweepExpired()`` has nothing to do);
/// - `countVisible(sentAtOrBefore:)` is SQS's approximate count of visible messages.
public final class SQSMessageQueue: MessageQueue {
    public let name: String
    /// The queue's URL, as `GetQueueUrl` returns it.
    public let url: String
    let client: AWSJSONClient
    let maxBodyBytes: Int
    /// The dead-letter queue's URL, from the redrive policy.
    public let deadLetterURL: String?
    /// How long SQS keeps a message (MessageRetentionPeriod).
    public let retention: Duration

    init(name: String, url: String, client: AWSJSONClient, maxBodyBytes: Int, deadLetterURL: String?, retention: Duration) {
        self.name = name
        self.url = url
        self.client = client
        self.maxBodyBytes = maxBodyBytes
        self.deadLetterURL = deadLetterURL
        self.retention = retention
    }

    /// The dead-letter queue named by the redrive policy, as a queue of its own (the reconciler
    /// reads it to settle the orders of dead-lettered messages).
    public var deadLetterQueue: SQSMessageQueue? {
        deadLetterURL.map { url in
            SQSMessageQueue(name: url.split(separator: "/").last.map(String.init) ?? url, url: url, client: client,
                            maxBodyBytes: maxBodyBytes, deadLetterURL: nil, retention: QueueLimits.maxRetention)
        }
    }

    public func send(_ body: String, delay: Duration) async throws -> String {
        try QueueLimits.validate(OutgoingMessage(body, delay: delay), maxBodyBytes: maxBodyBytes)
        let answer = try await call("SendMessage", SQS.SendMessage(QueueUrl: url, MessageBody: body, DelaySeconds: Self.seconds(delay)),
                                    as: SQS.SendMessageResult.self)
        return answer.MessageId
    }

    public func sendBatch(_ messages: [OutgoingMessage]) async throws -> [String] {
        try QueueLimits.validate(messages, maxBodyBytes: maxBodyBytes)
        let (entries, answer) = try await sendMessageBatch(messages)
        if let failed = answer.Failed?.first {
            throw AWSError(code: failed.Code, message: failed.Message ?? "entry \(failed.Id) was refused", status: 400, action: "SendMessageBatch")
        }
        let ids = Dictionary((answer.Successful ?? []).map { ($0.Id, $0.MessageId ?? "") }, uniquingKeysWith: { first, _ in first })
        return entries.map { ids[$0.Id] ?? "" }
    }

    public func receive(maxMessages: Int, wait: Duration, visibilityTimeout: Duration?) async throws -> [ReceivedMessage] {
        try QueueLimits.validateReceive(maxMessages: maxMessages, wait: wait, visibilityTimeout: visibilityTimeout)
        let input = SQS.ReceiveMessage(
            QueueUrl: url, MaxNumberOfMessages: maxMessages, WaitTimeSeconds: Self.seconds(wait),
            VisibilityTimeout: visibilityTimeout.map(Self.seconds),
            MessageSystemAttributeNames: ["ApproximateReceiveCount", "SentTimestamp", "ApproximateFirstReceiveTimestamp"],
            AttributeNames: ["ApproximateReceiveCount", "SentTimestamp", "ApproximateFirstReceiveTimestamp"])
        // The long poll holds the connection for up to 20 s: the call's timeout is longer.
        let answer = try await call("ReceiveMessage", input, as: SQS.ReceiveMessageResult.self,
                                    timeout: .seconds(Int64(Self.seconds(wait)) + 15))
        return (answer.Messages ?? []).map { message in
            let attributes = message.Attributes ?? [:]
            return ReceivedMessage(
                messageID: message.MessageId, receiptHandle: ReceiptHandle(message.ReceiptHandle),
                body: SNSEnvelope.unwrap(message.Body),
                receiveCount: attributes["ApproximateReceiveCount"].flatMap(Int.init) ?? 1,
                sentAtMillis: attributes["SentTimestamp"].flatMap(Int64.init) ?? 0,
                firstReceivedAtMillis: attributes["ApproximateFirstReceiveTimestamp"].flatMap(Int64.init) ?? 0)
        }
    }

    public func changeVisibility(_ receipt: ReceiptHandle, timeout: Duration) async throws {
        try QueueLimits.validateVisibility(timeout)
        try await translatingReceipts(receipt) {
            _ = try await self.call("ChangeMessageVisibility",
                                    SQS.ChangeMessageVisibility(QueueUrl: self.url, ReceiptHandle: receipt.rawValue,
                                                                VisibilityTimeout: Self.seconds(timeout)), as: SQS.Empty.self)
        }
    }

    public func delete(_ receipt: ReceiptHandle) async throws {
        try await translatingReceipts(receipt) {
            _ = try await self.call("DeleteMessage", SQS.DeleteMessage(QueueUrl: self.url, ReceiptHandle: receipt.rawValue), as: SQS.Empty.self)
        }
    }

    public func deleteBatch(_ receipts: [ReceiptHandle]) async throws -> [Result<Void, QueueError>] {
        try QueueLimits.validateBatchCount(receipts.count)
        let entries = receipts.enumerated().map { SQS.ReceiptEntry(Id: "r\($0.offset)", ReceiptHandle: $0.element.rawValue) }
        let answer = try await call("DeleteMessageBatch", SQS.DeleteMessageBatch(QueueUrl: url, Entries: entries), as: SQS.BatchResult.self)
        let failed = Set((answer.Failed ?? []).map(\.Id))
        return zip(entries, receipts).map { entry, receipt in
            failed.contains(entry.Id) ? .failure(.receiptHandleInvalid(receipt.rawValue)) : .success(())
        }
    }

    /// One SendMessageBatch call; entry `i` has the id `m<i>`.
    private func sendMessageBatch(_ messages: [OutgoingMessage]) async throws -> ([SQS.SendMessageBatch.Entry], SQS.BatchResult) {
        let entries = messages.enumerated().map { index, message in
            SQS.SendMessageBatch.Entry(Id: "m\(index)", MessageBody: message.body, DelaySeconds: Self.seconds(message.delay))
        }
        return (entries, try await call("SendMessageBatch", SQS.SendMessageBatch(QueueUrl: url, Entries: entries), as: SQS.BatchResult.self))
    }

    /// Visibility 0 for each; a receipt SQS refuses (its message was received again, or deleted)
    /// is reported not current.
    @discardableResult
    public func returnUntried(_ receipts: [ReceiptHandle]) async throws -> [Bool] {
        let size = QueueLimits.maxBatchSize
        var current: [Bool] = []
        for start in stride(from: 0, to: receipts.count, by: size) {
            let chunk = receipts[start..<min(start + size, receipts.count)]
            let entries = chunk.enumerated().map {
                SQS.VisibilityEntry(Id: "v\($0.offset)", ReceiptHandle: $0.element.rawValue, VisibilityTimeout: 0)
            }
            let answer = try await call("ChangeMessageVisibilityBatch", SQS.ChangeMessageVisibilityBatch(QueueUrl: url, Entries: entries),
                                        as: SQS.BatchResult.self)
            let succeeded = Set((answer.Successful ?? []).map(\.Id))
            current += entries.map { succeeded.contains($0.Id) }
        }
        return current
    }

    public func sweepExpired() async throws -> Int { 0 }

    public func purge() async throws {
        _ = try await call("PurgeQueue", SQS.QueueOnly(QueueUrl: url), as: SQS.Empty.self)
    }

    public func statistics() async throws -> QueueStatistics {
        let attributes = try await Self.attributes(of: url, client: client)
        var statistics = QueueStatistics(
            visible: attributes["ApproximateNumberOfMessages"].flatMap(Int.init) ?? 0,
            inFlight: attributes["ApproximateNumberOfMessagesNotVisible"].flatMap(Int.init) ?? 0,
            delayed: attributes["ApproximateNumberOfMessagesDelayed"].flatMap(Int.init) ?? 0)
        if let deadLetterURL {
            let dead = try await Self.attributes(of: deadLetterURL, client: client)
            // Visible or not: the reconciler parks the dead letters it settled (hidden), for inspection.
            statistics.deadLettered = (dead["ApproximateNumberOfMessages"].flatMap(Int.init) ?? 0)
                + (dead["ApproximateNumberOfMessagesNotVisible"].flatMap(Int.init) ?? 0)
        }
        return statistics
    }

    public func countVisible(sentAtOrBefore millis: Int64) async throws -> Int {
        min(try await statistics().visible, QueueLimits.countCeiling)
    }

    /// The queue's ARN (`arn:aws:sqs:region:account:name`).
    public func arn() async throws -> String {
        guard let arn = try await Self.attributes(of: url, client: client)["QueueArn"] else {
            throw AWSError(code: "InvalidResponse", message: "GetQueueAttributes gave no QueueArn", status: 200, action: "GetQueueAttributes")
        }
        return arn
    }

    static func attributes(of url: String, client: AWSJSONClient) async throws -> [String: String] {
        try await SQSQueues.call(client, "GetQueueAttributes", SQS.GetQueueAttributes(QueueUrl: url, AttributeNames: ["All"]),
                                 as: SQS.AttributesResult.self, queue: url).Attributes ?? [:]
    }

    private func call<Input: Encodable, Output: Decodable>(_ action: String, _ input: Input, as type: Output.Type,
                                                           timeout: TimeAmount? = nil) async throws -> Output {
        try await SQSQueues.call(client, action, input, as: type, queue: name, timeout: timeout)
    }

    /// An invalid or stale receipt is flashsale's ``QueueError/receiptHandleInvalid(_:)``.
    private func translatingReceipts(_ receipt: ReceiptHandle, _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as AWSError where ["ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight"].contains(error.code) {
            throw QueueError.receiptHandleInvalid(receipt.rawValue)
        }
    }

    /// Whole seconds, rounded up (SQS counts in seconds).
    static func seconds(_ duration: Duration) -> Int {
        Int((Double(duration.asMilliseconds) / 1000).rounded(.up))
    }
}

/// A message SNS delivered without raw delivery: `{"Type":"Notification","Message":"…",…}`.
/// Workers see the message itself either way, as the seeds' workers did.
enum SNSEnvelope {
    static func unwrap(_ body: String) -> String {
        guard body.hasPrefix("{"), body.contains("\"Notification\""),
              let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
              object["Type"] as? String == "Notification", let message = object["Message"] as? String
        else { return body }
        return message
    }
}

extension SQSMessageQueue: MessagePublisher {
    public var destination: String { url }

    /// SendMessageBatch: each entry's own outcome (a body SQS refuses is reported, not thrown).
    public func publishBatch(_ bodies: [String]) async throws -> [Bool] {
        guard !bodies.isEmpty else { return [] }
        try QueueLimits.validateBatchCount(bodies.count)
        let (entries, answer) = try await sendMessageBatch(bodies.map { OutgoingMessage($0) })
        let succeeded = Set((answer.Successful ?? []).map(\.Id))
        return entries.map { succeeded.contains($0.Id) }
    }
}
