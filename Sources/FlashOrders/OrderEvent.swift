/// Something that happened to an order that its row does not say: an attempt that failed, its
/// message dead-lettered, an operator's redrive, a settlement and who made it. An order's
/// history (`GET /admin/orders/{id}/history`) is its row's times with these in between.
///
/// Recorded only off the common path (an order charged at its first attempt writes none), so
/// the history costs nothing per order in a sale that goes well. A dead-lettering, a redrive and
/// a settlement are written in the transaction of the change; a failed attempt just after its
/// message is given back (a crash between the two leaves it out; the order row stays the truth).
public struct OrderEvent: Sendable, Hashable {
    /// What happened.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// A charge attempt ended without an answer (a transient gateway error); the message
        /// was given back to be tried again.
        case attemptFailed = "attempt_failed"
        /// The order's message left the payments queue for the dead-letter queue.
        case deadLettered = "dead_lettered"
        /// An operator sent the message back to the payments queue.
        case redriven
        /// Someone other than a worker's charge finished the order (the reconciler, an operator,
        /// a sync request at its deadline), asking the gateway for the charge's outcome.
        case settled
    }

    public var orderID: String
    /// Unix milliseconds.
    public var at: Int64
    public var kind: Kind
    /// What, in words: the error, the reason, the outcome.
    public var detail: String
    /// Who: a worker's process, the reconciler, an operator (address and request id).
    public var actor: String

    public init(orderID: String, at: Int64, kind: Kind, detail: String, actor: String) {
        self.orderID = orderID
        self.at = at
        self.kind = kind
        self.detail = detail
        self.actor = actor
    }
}
