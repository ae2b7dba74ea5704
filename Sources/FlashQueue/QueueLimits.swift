/// The limits of the SQS contract, and the checks every backend applies before writing anything.
public enum QueueLimits {
    /// Most entries in one send, delete or receive batch.
    public static let maxBatchSize = 10
    /// The most messages ``MessageQueue/countVisible(sentAtOrBefore:)`` counts: an order's place
    /// in the queue is asked on the request path, which must not cost in proportion to the backlog.
    public static let countCeiling = 10_000
    /// Longest long-poll wait.
    public static let maxWait: Duration = .seconds(20)
    /// Longest delivery delay.
    public static let maxDelay: Duration = .seconds(900)
    /// Longest visibility timeout (12 hours).
    public static let maxVisibilityTimeout: Duration = .seconds(43_200)
    /// Longest retention period (14 days).
    public static let maxRetention: Duration = .seconds(14 * 86_400)
    /// Default body limit: 256 KiB.
    public static let defaultMaxBodyBytes = 256 * 1024
    /// Largest configurable body limit: 1 MiB.
    public static let maxBodyBytesCeiling = 1024 * 1024

    /// Checks a batch of outgoing messages against the queue's body limit.
    public static func validate(_ messages: [OutgoingMessage], maxBodyBytes: Int) throws(QueueError) {
        guard (1...maxBatchSize).contains(messages.count) else { throw .invalidBatchSize(messages.count) }
        for message in messages { try validate(message, maxBodyBytes: maxBodyBytes) }
    }

    /// Checks one outgoing message against the queue's body limit.
    public static func validate(_ message: OutgoingMessage, maxBodyBytes: Int) throws(QueueError) {
        let bytes = message.body.utf8.count
        guard bytes <= maxBodyBytes else { throw .bodyTooLarge(bytes: bytes, limit: maxBodyBytes) }
        try validateContents(message.body)
        try validateDelay(message.delay)
    }

    /// Checks a body's characters against SQS's set. Beyond parity with SQS, this keeps one
    /// caller's body from failing a statement that carries other callers' messages too
    /// (PostgreSQL's text refuses U+0000).
    public static func validateContents(_ body: String) throws(QueueError) {
        var offset = 0
        for scalar in body.unicodeScalars {
            switch scalar.value {
            case 0x9, 0xA, 0xD, 0x20...0xD7FF, 0xE000...0xFFFD, 0x10000...0x10FFFF: break
            default: throw .invalidMessageContents(offset: offset)
            }
            offset += UTF8.width(scalar)
        }
    }

    /// Checks a delivery delay (0…900 s).
    public static func validateDelay(_ delay: Duration) throws(QueueError) {
        guard delay >= .zero, delay <= maxDelay else { throw .invalidDelay(delay) }
    }

    /// Checks receive arguments.
    public static func validateReceive(maxMessages: Int, wait: Duration, visibilityTimeout: Duration?) throws(QueueError) {
        guard (1...maxBatchSize).contains(maxMessages) else { throw .invalidMaxMessages(maxMessages) }
        guard wait >= .zero, wait <= maxWait else { throw .invalidWait(wait) }
        if let visibilityTimeout { try validateVisibility(visibilityTimeout) }
    }

    /// Checks a visibility timeout: 0 (give back now) or 1 ms…12 h. A lease shorter than a
    /// millisecond is refused: stored in whole milliseconds it would be no lease at all.
    public static func validateVisibility(_ timeout: Duration) throws(QueueError) {
        guard timeout == .zero || (timeout >= .milliseconds(1) && timeout <= maxVisibilityTimeout) else {
            throw .invalidVisibilityTimeout(timeout)
        }
    }

    /// Checks the size of a delete batch.
    public static func validateBatchCount(_ count: Int) throws(QueueError) {
        guard (1...maxBatchSize).contains(count) else { throw .invalidBatchSize(count) }
    }
}
