import FlashCore
import FlashPayments
import GRDB

/// The payment simulator's ledger, in the database file: it outlives `kill -9`, so a charge
/// decided before a crash is not taken again when the order's message comes back.
public final class SQLitePaymentLedger: PaymentLedger {
    let database: SQLiteDatabase

    public init(database: SQLiteDatabase) {
        self.database = database
    }

    public func outcome(for orderID: String) async throws -> PaymentOutcome? {
        try await database.read { db in try Self.outcome(db, orderID: orderID) }
    }

    public func record(orderID: String, amount: Double, outcome: PaymentOutcome) async throws -> (outcome: PaymentOutcome, recorded: Bool) {
        let result = try await database.write { [writer = database.connection.writer] db -> (PaymentOutcome, Bool) in
            let (approved, voided, chargeID, reason) = outcome.storedColumns
            // One statement in the common case; the stored outcome is read only for a repeat.
            // Insert-if-absent is the whole idempotency (and void) protocol: the first entry stands.
            try db.cachedStatement(sql: """
                INSERT INTO fs_payment_ledger (order_id, amount, approved, charge_id, reason, created_at, voided) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(order_id) DO NOTHING
                """).execute(arguments: [orderID, amount, approved, chargeID, reason, self.database.time.nowMillis(), voided])
            if db.changesCount == 1 {
                writer.addToCounter(LedgerCounts.counterName(outcome), 1)
                return (outcome, true)
            }
            let standing = try Self.outcome(db, orderID: orderID) ?? outcome
            if LedgerCounts.isDuplicate(requested: outcome, standing: standing) {
                writer.addToCounter(LedgerCounts.duplicatesCounterName, 1)
            }
            return (standing, false)
        }
        return result
    }

    public func entries() async throws -> [String: LedgerEntry] {
        try await database.read { db in
            var entries: [String: LedgerEntry] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT order_id, amount, approved, charge_id, reason, voided FROM fs_payment_ledger") {
                let id: String = row[0]
                entries[id] = LedgerEntry(orderID: id, amount: row[1], outcome: PaymentOutcome(approved: row[2], voided: row[5], chargeID: row[3], reason: row[4]))
            }
            return entries
        }
    }

    public func counts() async throws -> LedgerCounts {
        try await database.read { db in
            LedgerCounts(counters: try SQLiteSchema.counters(db))
        }
    }

    static func outcome(_ db: Database, orderID: String) throws -> PaymentOutcome? {
        guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT approved, charge_id, reason, voided FROM fs_payment_ledger WHERE order_id = ?"),
                                         arguments: [orderID])
        else { return nil }
        return PaymentOutcome(approved: row[0], voided: row[3], chargeID: row[1], reason: row[2])
    }
}
