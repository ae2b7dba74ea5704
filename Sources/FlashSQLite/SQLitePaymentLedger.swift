import FlashCore
import FlashPayments
import GRDB
import Synchronization

/// The payment simulator's ledger, in the database file: it outlives `kill -9`, so a charge
/// decided before a crash is not taken again when the order's message comes back.
public final class SQLitePaymentLedger: PaymentLedger {
    unowned(unsafe) let database: SQLiteDatabase
    private let tally: Mutex<LedgerCounts>

    /// Opens the ledger of `database`, counting its entries once.
    public init(database: SQLiteDatabase) async throws {
        self.database = database
        let counts = try await database.read { db -> LedgerCounts in
            let row = try Row.fetchOne(db, sql: "SELECT COALESCE(SUM(approved), 0), COALESCE(SUM(voided), 0), COUNT(*) FROM fs_payment_ledger")
            let approved: Int = row?[0] ?? 0
            let voided: Int = row?[1] ?? 0
            let all: Int = row?[2] ?? 0
            return LedgerCounts(approved: approved, declined: all - approved - voided, voided: voided)
        }
        tally = Mutex(counts)
    }

    public func outcome(for orderID: String) async throws -> PaymentOutcome? {
        try await database.read { db in try Self.outcome(db, orderID: orderID) }
    }

    public func record(orderID: String, amount: Double, outcome: PaymentOutcome) async throws -> (outcome: PaymentOutcome, recorded: Bool) {
        let result = try await database.write { db -> (PaymentOutcome, Bool) in
            let (approved, chargeID, reason): (Bool, String?, String?) = switch outcome {
            case let .approved(chargeID): (true, chargeID, nil)
            case let .declined(reason): (false, nil, reason)
            case .voided: (false, nil, nil)
            }
            // One statement in the common case; the stored outcome is read only for a repeat.
            // Insert-if-absent is the whole idempotency (and void) protocol: the first entry stands.
            try db.cachedStatement(sql: """
                INSERT INTO fs_payment_ledger (order_id, amount, approved, charge_id, reason, created_at, voided) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(order_id) DO NOTHING
                """).execute(arguments: [orderID, amount, approved, chargeID, reason, WallClock.nowMillis(), outcome == .voided])
            if db.changesCount == 1 { return (outcome, true) }
            return (try Self.outcome(db, orderID: orderID) ?? outcome, false)
        }
        if result.1 { tally.withLock { $0.add(outcome) } }
        return result
    }

    public func entries() async throws -> [String: LedgerEntry] {
        try await database.read { db in
            var entries: [String: LedgerEntry] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT order_id, amount, approved, charge_id, reason, voided FROM fs_payment_ledger") {
                let id: String = row[0]
                entries[id] = LedgerEntry(orderID: id, amount: row[1], outcome: Self.outcome(approved: row[2], chargeID: row[3], reason: row[4], voided: row[5]))
            }
            return entries
        }
    }

    public func counts() async throws -> LedgerCounts {
        tally.withLock { $0 }
    }

    static func outcome(_ db: Database, orderID: String) throws -> PaymentOutcome? {
        guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT approved, charge_id, reason, voided FROM fs_payment_ledger WHERE order_id = ?"),
                                         arguments: [orderID])
        else { return nil }
        return outcome(approved: row[0], chargeID: row[1], reason: row[2], voided: row[3])
    }

    private static func outcome(approved: Bool, chargeID: String?, reason: String?, voided: Bool) -> PaymentOutcome {
        if approved { return .approved(chargeID: chargeID ?? "") }
        return voided ? .voided : .declined(reason: reason ?? "")
    }
}
