import FlashPayments
import ServiceLifecycle

/// The payment gateway's own store when it keeps its ledger in a file (`flashsale gateway
/// --data`): the file and the ledger in it, and nothing of an order backend (no queues, topic,
/// fleet registry or wake-up poll).
///
/// A Service: it runs until graceful shutdown, then closes the file.
public final class SQLiteLedgerFile: Service {
    /// The ledger the gateway answers from.
    public let ledger: SQLitePaymentLedger
    private let database: SQLiteDatabase

    /// Opens (or creates) the file at `path`, owner-only, with its schema.
    public init(path: String) throws {
        let database = try SQLiteDatabase(path: path)
        self.database = database
        self.ledger = SQLitePaymentLedger(database: database)
    }

    public func run() async throws {
        try? await gracefulShutdown()
        try database.close()
    }
}
