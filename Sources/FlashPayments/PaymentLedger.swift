import Synchronization

/// The gateway's record of every decided charge, one entry per order: what makes charging
/// idempotent, and what lets a test prove "every order charged exactly once".
public protocol PaymentLedger: Sendable {
    /// The recorded outcome for `orderID`, if any.
    func outcome(for orderID: String) async throws -> PaymentOutcome?

    /// Records `outcome` for `orderID` unless an outcome is already there. Returns the outcome
    /// that stands and whether this call recorded it. A charge (not a void) that finds a charge
    /// or decline standing counts as a duplicate prevented.
    func record(orderID: String, amount: Double, outcome: PaymentOutcome) async throws -> (outcome: PaymentOutcome, recorded: Bool)

    /// Every entry, by order id (for audits and tests).
    func entries() async throws -> [String: LedgerEntry]

    /// Entries by outcome, and duplicates prevented (a durable ledger keeps them as stored
    /// counters: the same for every process that shares it).
    func counts() async throws -> LedgerCounts
}

/// A ledger's entries by outcome.
public struct LedgerCounts: Sendable, Hashable {
    public var approved: Int
    public var declined: Int
    public var voided: Int
    /// Charges that found the order already decided, and took nothing.
    public var duplicates: Int

    public init(approved: Int = 0, declined: Int = 0, voided: Int = 0, duplicates: Int = 0) {
        self.approved = approved
        self.declined = declined
        self.voided = voided
        self.duplicates = duplicates
    }

    /// Whether recording `requested` over `standing` prevented a duplicate charge.
    public static func isDuplicate(requested: PaymentOutcome, standing: PaymentOutcome) -> Bool {
        requested != .voided && standing != .voided
    }

    /// Counts `outcome` once.
    public mutating func add(_ outcome: PaymentOutcome) {
        switch outcome {
        case .approved: approved += 1
        case .declined: declined += 1
        case .voided: voided += 1
        }
    }
}

/// One ledger line.
public struct LedgerEntry: Sendable, Hashable {
    public var orderID: String
    public var amount: Double
    public var outcome: PaymentOutcome

    public init(orderID: String, amount: Double, outcome: PaymentOutcome) {
        self.orderID = orderID
        self.amount = amount
        self.outcome = outcome
    }
}

/// A ledger in memory: for tests and for gateways whose record need not outlive the process.
public final class InMemoryPaymentLedger: PaymentLedger {
    private let lines = Mutex<[String: LedgerEntry]>([:])
    private let duplicates = Atomic<Int>(0)

    public init() {}

    public func outcome(for orderID: String) async throws -> PaymentOutcome? {
        lines.withLock { $0[orderID]?.outcome }
    }

    public func record(orderID: String, amount: Double, outcome: PaymentOutcome) async throws -> (outcome: PaymentOutcome, recorded: Bool) {
        let result = lines.withLock { lines in
            if let existing = lines[orderID] { return (existing.outcome, false) }
            lines[orderID] = LedgerEntry(orderID: orderID, amount: amount, outcome: outcome)
            return (outcome, true)
        }
        if !result.1, LedgerCounts.isDuplicate(requested: outcome, standing: result.0) { duplicates.add(1, ordering: .relaxed) }
        return result
    }

    public func entries() async throws -> [String: LedgerEntry] {
        lines.withLock { $0 }
    }

    public func counts() async throws -> LedgerCounts {
        lines.withLock { lines in
            var counts = LedgerCounts()
            for line in lines.values { counts.add(line.outcome) }
            counts.duplicates = duplicates.load(ordering: .relaxed)
            return counts
        }
    }
}

/// How the database ledgers store an outcome and count it: one form for every backend.
extension PaymentOutcome {
    /// The outcome as ledger columns.
    public var storedColumns: (approved: Bool, voided: Bool, chargeID: String?, reason: String?) {
        switch self {
        case let .approved(chargeID): (true, false, chargeID, nil)
        case let .declined(reason): (false, false, nil, reason)
        case .voided: (false, true, nil, nil)
        }
    }

    /// The outcome from ledger columns (``storedColumns``).
    public init(approved: Bool, voided: Bool, chargeID: String?, reason: String?) {
        if approved {
            self = .approved(chargeID: chargeID ?? "")
        } else {
            self = voided ? .voided : .declined(reason: reason ?? "")
        }
    }
}

extension LedgerCounts {
    /// The stored counter of an outcome.
    public static func counterName(_ outcome: PaymentOutcome) -> String {
        switch outcome {
        case .approved: "payments.approved"
        case .declined: "payments.declined"
        case .voided: "payments.voided"
        }
    }

    /// The stored counter of charges refused as duplicates.
    public static let duplicatesCounterName = "payments.duplicates"

    /// The counts from stored counters, by name.
    public init(counters: [String: Int]) {
        self.init(approved: counters["payments.approved"] ?? 0, declined: counters["payments.declined"] ?? 0,
                  voided: counters["payments.voided"] ?? 0, duplicates: counters[Self.duplicatesCounterName] ?? 0)
    }
}
