import FlashCore

/// Why a queue operation was refused. A refused operation writes nothing.
public enum QueueError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The body is larger than the queue's limit.
    case bodyTooLarge(bytes: Int, limit: Int)
    /// A batch had more than 10 entries, or none.
    case invalidBatchSize(Int)
    /// `maxMessages` outside 1…10.
    case invalidMaxMessages(Int)
    /// A long-poll wait outside 0…20 s.
    case invalidWait(Duration)
    /// A visibility timeout that is neither 0 nor 1 ms…12 h.
    case invalidVisibilityTimeout(Duration)
    /// A delay outside 0…900 s.
    case invalidDelay(Duration)
    /// No queue (or topic) of that name.
    case queueDoesNotExist(String)
    /// The receipt handle is malformed, stale (the message was delivered again), or its message is gone.
    case receiptHandleInvalid(String)
    /// A queue attribute out of its range.
    case invalidAttribute(String)
    /// The body holds a character SQS does not carry (outside #x9, #xA, #xD, #x20–#xD7FF,
    /// #xE000–#xFFFD, #x10000–#x10FFFF), at this UTF-8 byte offset.
    case invalidMessageContents(offset: Int)

    public var description: String {
        switch self {
        case let .bodyTooLarge(bytes, limit):
            return "message body is \(bytes) bytes, over the queue's limit of \(limit) bytes"
        case let .invalidBatchSize(count):
            return "a batch holds 1 to \(QueueLimits.maxBatchSize) entries, not \(count)"
        case let .invalidMaxMessages(count):
            return "maxMessages must be 1 to \(QueueLimits.maxBatchSize), not \(count)"
        case let .invalidWait(wait):
            return "wait must be 0 to 20 seconds, not \(wait.asSeconds) s"
        case let .invalidVisibilityTimeout(timeout):
            return "visibility timeout must be 0 (give back) or 1 ms to 43200 seconds, not \(timeout.asSeconds) s"
        case let .invalidDelay(delay):
            return "delay must be 0 to 900 seconds, not \(delay.asSeconds) s"
        case let .queueDoesNotExist(name):
            return "queue or topic '\(name)' does not exist"
        case let .receiptHandleInvalid(handle):
            return "receipt handle '\(handle)' is not the current delivery of any message (stale, deleted or malformed)"
        case let .invalidAttribute(text):
            return "invalid queue attribute: \(text)"
        case let .invalidMessageContents(offset):
            return "message body holds a character a queue cannot carry at byte \(offset) (allowed: tab, newline, carriage return and Unicode from U+0020, without U+FFFE/U+FFFF)"
        }
    }
}

/// An error that tells whether the call did nothing (a client error: access denied, no such
/// queue), as opposed to one whose effect is unknown (no answer, a server error), so that a
/// caller may undo what it prepared only when nothing happened.
public protocol RefusedCall: Error {
    /// The call was refused before it had any effect.
    var didNothing: Bool { get }
}

extension QueueError: RefusedCall {
    public var didNothing: Bool { true }
}

/// A purge asked for while the previous one is still being settled (SQS itself refuses a
/// PurgeQueue within 60 s of the last).
public struct PurgeInProgress: Error, Sendable, CustomStringConvertible {
    /// When a purge may be asked for again.
    public var retryAfter: Duration
    public init(retryAfter: Duration) { self.retryAfter = retryAfter }
    public var description: String {
        "the previous purge of this queue is still being settled; purge again in \(retryAfter.shortDescription)"
    }
}
