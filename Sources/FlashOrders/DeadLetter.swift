import FlashCore

/// A message in the payments queue's dead-letter queue, seen without receiving it, with the
/// order it was for: what the console lists and an operator acts on.
public struct DeadLetter: Sendable, Hashable {
    /// The message's id (the same as in the payments queue: the order names it).
    public var messageID: String
    /// The order the message was for; nil when the body is not a payment message.
    public var orderID: String?
    /// Deliveries the message had before it was dead-lettered (and since: the dead-letter
    /// handler's own receives count too).
    public var receiveCount: Int
    /// When the message was first sent (Unix ms).
    public var sentAt: Int64
    /// Until when the message is hidden in the dead-letter queue (Unix ms): the handler parks
    /// the messages it has dealt with.
    public var hiddenUntil: Int64
    /// The order as stored now; nil when there is none (or no order id).
    public var order: Order?

    public init(messageID: String, orderID: String?, receiveCount: Int, sentAt: Int64, hiddenUntil: Int64, order: Order?) {
        self.messageID = messageID
        self.orderID = orderID
        self.receiveCount = receiveCount
        self.sentAt = sentAt
        self.hiddenUntil = hiddenUntil
        self.order = order
    }
}

/// What a redrive did to one dead letter.
public enum RedriveOutcome: Sendable, Hashable {
    /// The message is back in the payments queue, visible at once with its receive count reset,
    /// and its order is `pending` again: the workers will charge it.
    case redriven(Order)
    /// Its order is already completed or failed: a charge now would change nothing, so the
    /// message stays where it is.
    case orderFinal(Order)
    /// No such message in the dead-letter queue (redriven already, purged), or it names no order.
    case notFound
}

/// The store cannot list or move the dead-letter queue's messages: its queues are AWS SQS, where
/// a message can be seen only by receiving it (use the AWS console's or CLI's redrive, which
/// moves messages back to their source queue).
public struct DeadLettersUnsupported: Error, Sendable, CustomStringConvertible {
    public init() {}

    public var description: String {
        "the dead-letter queue is on AWS SQS, which shows a message only to a receive: flashsale cannot list or move its messages; their orders are settled by the reconciler (at once, or when --dead-letter-hold ends)"
    }
}

extension Order {
    /// The order's message was sent back from the dead-letter queue: `pending` again (its
    /// attempts so far stay counted), and its hold starts over. Nil for a finished order.
    public func redriven(now: Int64) -> Order? {
        // (Its hold starts over: it counts from the next dead-lettering.)
        guard !status.isTerminal else { return nil }
        var order = self
        order.status = .pending
        order.updatedAt = now
        order.deadLetteredAt = nil
        return order
    }
}

/// What ``OrderStore/markDeadLettered(_:messageID:verifying:by:)`` found.
public enum DeadLetterMark: Sendable, Hashable {
    /// The order is open and its message is in the dead-letter queue: stamped (now, or when it
    /// was first found there; ``Order/deadLetteredAt``).
    case marked(Order)
    /// The order is finished: nothing to hold or settle.
    case finished(Order)
    /// The message is not in the dead-letter queue (sent back meanwhile): nothing to do.
    case notDeadLettered(Order)
    /// No such order.
    case notFound
}
