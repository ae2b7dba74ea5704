import FlashPayments
import FlashSQLite

/// Everything `flashsale serve` can be told, with its defaults.
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// The database file.
    public var dataPath = "./flashsale.db"
    public var synchronous: SQLiteDatabase.Synchronous = .full
    /// Payment workers in this process (0: accept only).
    public var workers = 10
    public var payment = SimulatedPaymentGateway.Configuration(latency: .fixed(.seconds(3)))
    public var syncLanes = 1
    public var syncTimeout: Duration = .seconds(10)
    public var visibilityTimeout: Duration = .seconds(30)
    public var maxReceives = 5
    /// How long a payment message is kept before it is dropped (SQS's MessageRetentionPeriod).
    public var messageRetention: Duration = .seconds(4 * 86_400)
    public var shutdownDeadline: Duration = .seconds(10)
    public var retryBackoff: Duration = .milliseconds(500)
    /// Time between the reconciler's sweeps.
    public var reconcileInterval: Duration = .seconds(1)
    public var adminToken: String?
    public var flashProduct = "iphone_16"
    public var strictCatalog = false

    public init() {}
}
