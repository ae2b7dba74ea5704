import FlashCore
import FlashPayments
import GRDB
import Synchronization

/// The payment simulator's ledger, in the database file: it outlives `kill -9`, so a charge
/// decided before a crash is not taken again when the order's message comes back.
public final class SQLitePaymentLedger: PaymentLedger {
    unowned(unsafe) let database: SQLiteDatabase
    private let tally: Mutex<(approved: Int, declined: Int)>

    /// Opens the ledger of `database`, counting its entries once.
    public init(database: SQLiteDatabase) async throws {
        self.database = database
        let counts = try await database.read { db -> (Int, Int) in
            let row = try Row.fetchOne(db, sql: "SELECT COALESCE(SUM(approved), 0), COUNT(*) FROM fs_payment_ledger")
            let approved: Int = row?[0] ?? 0
            let all: Int = row?[1] ?? 0
            return (approved, all - approved)
        }
        tally = Mutex((counts.0, counts.1))
    }

    public func outcome(for orderID: String) async throws -> PaymentOutcome? {
        try await database.read { db in try Self.outcome(db, orderID: orderID) }
    }

    public func record(orderID: String, amount: Double, outcome: PaymentOutcome) async throws -> (outcome: PaymentOutcome, recorded: Bool) {
        let result = try await database.write { db -> (PaymentOutcome, Bool) in
            let (approved, chargeID, reason): (Bool, String?, String?) = switch outcome {
            case let .approved(chargeID): (true, chargeID, nil)
            case let .declined(reason): (false, nil, reason)
            }
            // One statement in the common case; the stored outcome is read only for a repeat.
            try db.cachedStatement(sql: """
                INSERT INTO fs_payment_ledger (order_id, amount, approved, charge_id, reason, created_at) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT(order_id) DO NOTHING
                """).execute(arguments: [orderID, amount, approved, chargeID, reason, WallClock.nowMillis()])
            if db.changesCount == 1 { return (outcome, true) }
            return (try Self.outcome(db, orderID: orderID) ?? outcome, false)
        }
        if result.1 {
            tally.withLock { if outcome.isApproved { $0.approved += 1 } else { $0.declined += 1 } }
        }
        return result
    }

    public func entries() async throws -> [String: LedgerEntry] {
        try await database.read { db in
            var entries: [String: LedgerEntry] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT order_id, amount, approved, charge_id, reason FROM fs_payment_ledger") {
                let id: String = row[0]
                let approved: Bool = row[2]
                entries[id] = LedgerEntry(orderID: id, amount: row[1],
                                          outcome: approved ? .approved(chargeID: row[3] ?? "") : .declined(reason: row[4] ?? ""))
            }
            return entries
        }
    }

    public func counts() async throws -> (approved: Int, declined: Int) {
        tally.withLock { $0 }
    }

    static func outcome(_ db: Database, orderID: String) throws -> PaymentOutcome? {
        guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT approved, charge_id, reason FROM fs_payment_ledger WHERE order_id = ?"),
                                         arguments: [orderID])
        else { return nil }
        let approved: Bool = row[0]
        return approved ? .approved(chargeID: row[1] ?? "") : .declined(reason: row[2] ?? "")
    }
}
