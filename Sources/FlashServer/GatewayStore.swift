import FlashPayments
import FlashSQLite
import ServiceLifecycle

/// The store of `flashsale gateway`: its ledger, in a file of its own (``SQLiteLedgerFile``:
/// the ledger alone, no order backend) or in memory. The payment provider's store is its own,
/// never the order store's.
public struct GatewayStore: Sendable {
    /// The ledger the gateway answers from.
    public let ledger: any PaymentLedger
    /// What runs in the gateway's service group and closes the store at shutdown (the file).
    public let services: [any Service]

    /// The ledger in the file at `path` (created owner-only if missing), or in memory when nil.
    public static func open(path: String?) throws -> GatewayStore {
        guard let path else { return GatewayStore(ledger: InMemoryPaymentLedger(), services: []) }
        let file = try SQLiteLedgerFile(path: path)
        return GatewayStore(ledger: file.ledger, services: [file])
    }
}
