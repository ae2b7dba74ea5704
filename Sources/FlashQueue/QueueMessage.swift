/// A message to send, with an optional delivery delay (0…900 s).
public struct OutgoingMessage: Sendable, Hashable {
    /// The message body (at most the queue's body limit in UTF-8 bytes).
    public var body: String
    /// How long the message stays invisible after it is sent.
    public var delay: Duration

    public init(_ body: String, delay: Duration = .zero) {
        self.body = body
        self.delay = delay
    }
}

/// An opaque token naming one delivery of one message.
///
/// Only the handle of the latest delivery may delete the message or change its visibility.
public struct ReceiptHandle: Sendable, Hashable, CustomStringConvertible {
    /// The handle's text, as a client would store it.
    public let rawValue: String

    public init(_ rawValue: String) {
        self.rawValue = rawValue
    }

    public var description: String { rawValue }
}

/// One delivery of a message.
public struct ReceivedMessage: Sendable, Hashable {
    /// The message id returned when it was sent.
    public var messageID: String
    /// The handle of this delivery.
    public var receiptHandle: ReceiptHandle
    /// The message body, unchanged.
    public var body: String
    /// How many times the message has been delivered, this delivery included.
    public var receiveCount: Int
    /// When the message was sent, in Unix milliseconds.
    public var sentAtMillis: Int64
    /// When the message was first delivered, in Unix milliseconds.
    public var firstReceivedAtMillis: Int64

    public init(
        messageID: String, receiptHandle: ReceiptHandle, body: String,
        receiveCount: Int, sentAtMillis: Int64, firstReceivedAtMillis: Int64
    ) {
        self.messageID = messageID
        self.receiptHandle = receiptHandle
        self.body = body
        self.receiveCount = receiveCount
        self.sentAtMillis = sentAtMillis
        self.firstReceivedAtMillis = firstReceivedAtMillis
    }
}

/// Approximate queue statistics, as SQS's queue attributes report them.
public struct QueueStatistics: Sendable, Hashable, Codable {
    /// Messages that a receive would return now.
    public var visible: Int
    /// Messages received and not yet deleted, whose lease has not ended.
    public var inFlight: Int
    /// Messages sent with a delay that has not passed yet.
    public var delayed: Int
    /// Messages in the queue's dead-letter queue.
    public var deadLettered: Int
    /// Age of the oldest message in the queue, in seconds (0 when empty).
    public var oldestAgeSeconds: Double
    /// Messages dropped because they outlived the retention period, since the queue was created.
    public var expired: Int
    /// Seconds until the last lease of the messages in flight ends (0 when none is in flight);
    /// nil when the queue cannot say (SQS).
    public var leasesEndInSeconds: Double?

    public init(visible: Int = 0, inFlight: Int = 0, delayed: Int = 0, deadLettered: Int = 0,
                oldestAgeSeconds: Double = 0, expired: Int = 0, leasesEndInSeconds: Double? = nil) {
        self.leasesEndInSeconds = leasesEndInSeconds
        self.visible = visible
        self.inFlight = inFlight
        self.delayed = delayed
        self.deadLettered = deadLettered
        self.oldestAgeSeconds = oldestAgeSeconds
        self.expired = expired
    }

    /// Every message in the queue: visible, in flight and delayed.
    public var total: Int { visible + inFlight + delayed }
}
