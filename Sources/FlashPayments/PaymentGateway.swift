/// What a charge came to.
public enum PaymentOutcome: Sendable, Hashable {
    /// Money taken; `chargeID` names the charge at the gateway.
    case approved(chargeID: String)
    /// The gateway refused the charge for good (card declined, insufficient funds…).
    case declined(reason: String)
    /// No charge was made, and none can be: the order's charge was voided (by
    /// ``PaymentGateway/finalOutcome(orderID:)``) before any charge arrived.
    case voided

    public var isApproved: Bool {
        if case .approved = self { return true }
        return false
    }
}

/// A failure worth retrying: nothing was charged.
public struct TransientPaymentError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    /// False when no attempt reached the gateway at all (every connection was refused): the
    /// charge was never sent. True when one may have (a timeout, a 5xx, a cut connection).
    public var reachedGateway: Bool
    public init(_ message: String, reachedGateway: Bool = true) {
        self.message = message
        self.reachedGateway = reachedGateway
    }
    public var description: String { message }
}

/// The charge was cancelled before it reached the gateway: nothing was decided and nothing
/// charged, so the attempt does not count (a worker gives its message back untried).
public struct PaymentNotSent: Error, Sendable, Hashable, CustomStringConvertible {
    public init() {}
    public var description: String { "the charge was cancelled before it reached the gateway" }
}

/// A payment gateway: the slow step of the flash sale.
///
/// `charge` is idempotent by order id: charging an order again returns the first outcome and
/// takes no money.
public protocol PaymentGateway: Sendable {
    /// Charges `amount` for `orderID`. Throws ``TransientPaymentError`` when the attempt failed
    /// without charging (retry later), ``PaymentNotSent`` if cancelled before the charge reached
    /// the gateway, and `CancellationError` if cancelled after (the charge may be decided: ask
    /// again, or ask ``finalOutcome(orderID:)``). An implementation that talks to a remote
    /// provider bounds every call with a timeout.
    func charge(orderID: String, amount: Double) async throws -> PaymentOutcome

    /// The outcome that stands for `orderID`'s charge, for settling an order that nobody is
    /// charging any more (the rule of final states). If no charge was made, the order's charge
    /// is voided first, atomically with the look-up: a `charge` arriving later answers
    /// ``PaymentOutcome/voided`` and takes nothing, so "never charged" stays true. A real
    /// provider is asked the same way (retrieve the payment by its idempotency key; cancel it
    /// if it has not succeeded).
    ///
    /// Throws when the gateway cannot answer: the outcome is unknown, and the caller must leave
    /// the order as it is and ask again later.
    func finalOutcome(orderID: String) async throws -> PaymentOutcome

    /// Counters of what the gateway did.
    func statistics() async throws -> PaymentStatistics

    /// Returns when the gateway answers, throws when it cannot be reached: a check that charges
    /// nothing, for a worker pool waiting out an outage. By default, asks for ``statistics()``.
    func probe() async throws

    /// How long a charge is expected to take (for wait predictions).
    var expectedLatency: Duration { get }
}

extension PaymentGateway {
    public func probe() async throws {
        _ = try await statistics()
    }
}

/// Counters of a gateway.
public struct PaymentStatistics: Sendable, Hashable, Codable {
    /// Orders charged (approved), each once.
    public var charges: Int
    /// Orders declined.
    public var declines: Int
    /// Charges asked again for an order already decided, answered from the ledger.
    public var duplicateChargesPrevented: Int
    /// Attempts that failed transiently.
    public var transientErrors: Int
    /// Orders whose charge was voided before any was made (settled as never charged).
    public var voided: Int

    public init(charges: Int = 0, declines: Int = 0, duplicateChargesPrevented: Int = 0, transientErrors: Int = 0, voided: Int = 0) {
        self.charges = charges
        self.declines = declines
        self.duplicateChargesPrevented = duplicateChargesPrevented
        self.transientErrors = transientErrors
        self.voided = voided
    }
}
