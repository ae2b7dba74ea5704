/// Somewhere messages are published in batches of up to ``QueueLimits/maxBatchSize``: an SQS
/// queue (SendMessageBatch) or an SNS topic (PublishBatch). What the outbox relay publishes to.
public protocol MessagePublisher: Sendable {
    /// Where the messages go, for logs.
    var destination: String { get }

    /// Publishes up to ``QueueLimits/maxBatchSize`` bodies; returns, in order, whether each was
    /// accepted. A refused entry is the caller's to try again; a thrown error means none is
    /// known to be accepted (some may be: the caller's retry may publish them twice, so
    /// consumers must be idempotent).
    func publishBatch(_ bodies: [String]) async throws -> [Bool]
}
