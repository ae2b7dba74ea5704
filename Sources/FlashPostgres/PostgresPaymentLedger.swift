import FlashCore
import FlashPayments
import PostgresNIO

/// The simulated gateway's ledger in PostgreSQL, shared by every worker process: the first
/// outcome recorded for an order stands (insert-if-absent on the order id), so no order is
/// charged twice whichever process's worker gets its message.
public final class PostgresPaymentLedger: PaymentLedger {
    let database: PostgresDatabase

    public init(database: PostgresDatabase) {
        self.database = database
    }

    public func outcome(for orderID: String) async throws -> PaymentOutcome? {
        try await database.read("SELECT approved, charge_id, reason, voided FROM fs_payment_ledger WHERE order_id = \(orderID)")
            .first.map(Self.outcome)
    }

    public func record(orderID: String, amount: Double, outcome: PaymentOutcome) async throws -> (outcome: PaymentOutcome, recorded: Bool) {
        let (approved, voided, chargeID, reason) = outcome.storedColumns
        return try await database.transaction { [database] connection in
            var counters = CounterDeltas()
            let inserted = try await connection.query("""
                INSERT INTO fs_payment_ledger (order_id, amount, approved, voided, charge_id, reason, created_at)
                VALUES (\(orderID), \(amount), \(approved), \(voided), \(chargeID), \(reason), \(self.database.time.nowMillis()))
                ON CONFLICT (order_id) DO NOTHING RETURNING 1
                """, logger: database.logger).collect()
            var result = (outcome, true)
            if inserted.isEmpty {
                let standing = try await connection.query("""
                    SELECT approved, charge_id, reason, voided FROM fs_payment_ledger WHERE order_id = \(orderID)
                    """, logger: database.logger).collect().first.map(Self.outcome) ?? outcome
                if LedgerCounts.isDuplicate(requested: outcome, standing: standing) { counters.add(LedgerCounts.duplicatesCounterName, 1) }
                result = (standing, false)
            } else {
                counters.add(LedgerCounts.counterName(outcome), 1)
            }
            try await counters.write(on: connection, logger: database.logger)
            return result
        }
    }

    public func entries() async throws -> [String: LedgerEntry] {
        var entries: [String: LedgerEntry] = [:]
        for row in try await database.read("SELECT order_id, amount, approved, charge_id, reason, voided FROM fs_payment_ledger") {
            let columns = row.makeRandomAccess()
            let id: String = try columns.get(0)
            entries[id] = LedgerEntry(orderID: id, amount: try columns.get(1),
                                      outcome: PaymentOutcome(approved: try columns.get(2), voided: try columns.get(5),
                                                               chargeID: try columns.get(3), reason: try columns.get(4)))
        }
        return entries
    }

    public func counts() async throws -> LedgerCounts {
        LedgerCounts(counters: try await CounterDeltas.read(database, prefix: "payments."))
    }

    private static func outcome(_ row: PostgresRow) throws -> PaymentOutcome {
        let columns = row.makeRandomAccess()
        return PaymentOutcome(approved: try columns.get(0), voided: try columns.get(3), chargeID: try columns.get(1), reason: try columns.get(2))
    }
}
