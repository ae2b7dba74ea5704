import FlashCore

/// A queue's settings, with SQS's defaults.
public struct QueueAttributes: Sendable, Hashable {
    /// Default lease of a delivery (SQS default: 30 s).
    public var visibilityTimeout: Duration
    /// Deliveries after which the message moves to the dead-letter queue; 0 disables redrive.
    public var maxReceiveCount: Int
    /// How long a message is kept (SQS default: 4 days).
    public var retention: Duration
    /// Delay applied to every message sent without one.
    public var deliveryDelay: Duration
    /// Largest body accepted, in UTF-8 bytes (default 256 KiB, at most 1 MiB).
    public var maxBodyBytes: Int
    /// The dead-letter queue's name; `nil` means `"<name>-dlq"` when redrive is on.
    public var deadLetterQueue: String?

    public init(
        visibilityTimeout: Duration = .seconds(30),
        maxReceiveCount: Int = 5,
        retention: Duration = .seconds(4 * 86_400),
        deliveryDelay: Duration = .zero,
        maxBodyBytes: Int = QueueLimits.defaultMaxBodyBytes,
        deadLetterQueue: String? = nil
    ) {
        self.visibilityTimeout = visibilityTimeout
        self.maxReceiveCount = maxReceiveCount
        self.retention = retention
        self.deliveryDelay = deliveryDelay
        self.maxBodyBytes = maxBodyBytes
        self.deadLetterQueue = deadLetterQueue
    }

    /// The dead-letter queue's name for a queue called `name`, or `nil` when redrive is off.
    public func deadLetterQueueName(for name: String) -> String? {
        maxReceiveCount > 0 ? (deadLetterQueue ?? "\(name)-dlq") : nil
    }

    /// Checks every attribute's range.
    public func validate() throws(QueueError) {
        try QueueLimits.validateVisibility(visibilityTimeout)
        try QueueLimits.validateDelay(deliveryDelay)
        guard maxReceiveCount >= 0, maxReceiveCount <= 1000 else {
            throw .invalidAttribute("maxReceiveCount must be 0 to 1000, not \(maxReceiveCount)")
        }
        guard retention >= .milliseconds(1), retention <= QueueLimits.maxRetention else {
            throw .invalidAttribute("retention must be 1 ms to 14 days, not \(retention.asSeconds) s")
        }
        guard (1...QueueLimits.maxBodyBytesCeiling).contains(maxBodyBytes) else {
            throw .invalidAttribute("maxBodyBytes must be 1 to \(QueueLimits.maxBodyBytesCeiling), not \(maxBodyBytes)")
        }
    }
}
