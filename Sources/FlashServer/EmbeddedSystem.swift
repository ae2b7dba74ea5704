import FlashAPI
import FlashCore
import FlashPayments
import FlashOrders
import FlashQueue
import FlashSQLite
import FlashWorkers
import Hummingbird
import Logging
import ServiceLifecycle

/// The whole system in one process on one SQLite file: the queue (topic `orders` → queue
/// `payments`, dead letters in `payments-dlq`), the order store with its inventory gate, the
/// simulated gateway with a durable ledger, the worker pool, the reconciler and the API.
public struct EmbeddedSystem: Sendable {
    public let configuration: ServerConfiguration
    public let database: SQLiteDatabase
    public let services: FlashServices
    public let workers: WorkerPool
    public let reconciler: Reconciler
    public let store: SQLiteOrderStore
    public let paymentsQueue: SQLiteMessageQueue
    public let ledger: SQLitePaymentLedger

    /// Opens (or creates) the database and wires every component.
    public static func open(_ configuration: ServerConfiguration, logger: Logger) async throws -> EmbeddedSystem {
        let database = try SQLiteDatabase(path: configuration.dataPath, synchronous: configuration.synchronous)
        let payments = try await database.createQueue("payments", attributes: QueueAttributes(
            visibilityTimeout: configuration.visibilityTimeout, maxReceiveCount: configuration.maxReceives,
            retention: configuration.messageRetention))
        let topic = try await database.createTopic("orders")
        try await topic.subscribe(queue: "payments")
        let deadLetters: SQLiteMessageQueue? = if let name = payments.deadLetterQueueName {
            try await database.queue(named: name)
        } else {
            nil
        }
        let store = try await SQLiteOrderStore(database: database, topic: topic, paymentsQueue: payments,
                                               strictCatalog: configuration.strictCatalog)
        let ledger = try await SQLitePaymentLedger(database: database)
        let gateway = SimulatedPaymentGateway(configuration: configuration.payment, ledger: ledger)
        let processed = RateMeter()
        let workers = WorkerPool(
            configuration: .init(workers: configuration.workers, visibilityTimeout: configuration.visibilityTimeout,
                                 retryBackoff: configuration.retryBackoff, shutdownDeadline: configuration.shutdownDeadline),
            queue: payments, store: store, gateway: gateway,
            processed: processed, logger: logger)
        let reconciler = Reconciler(
            configuration: .init(interval: configuration.reconcileInterval), store: store,
            settler: OrderSettler(store: store, gateway: gateway), paymentsQueue: payments, deadLetterQueue: deadLetters,
            processed: processed, logger: logger)
        let services = FlashServices(
            store: store, paymentsQueue: payments, deadLetterQueue: deadLetters, gateway: gateway, workers: workers,
            reconciler: reconciler, lanes: CheckoutLanes(lanes: configuration.syncLanes, expectedServiceTime: configuration.payment.latency.mean),
            syncTimeout: configuration.syncTimeout, processed: processed, catalog: store,
            admin: AdminPolicy(token: configuration.adminToken), flashProduct: configuration.flashProduct)
        return EmbeddedSystem(configuration: configuration, database: database, services: services, workers: workers,
                              reconciler: reconciler, store: store, paymentsQueue: payments, ledger: ledger)
    }

    /// The HTTP application serving this system, with the worker pool and the reconciler in its
    /// service group (the reconciler runs with `--workers 0` too: retention, purges and sync
    /// requests that died still need settling).
    public func application(logger: Logger, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        buildApplication(services, host: configuration.host, port: configuration.port, services: [workers, reconciler],
                         logger: logger, onServerRunning: onServerRunning)
    }
}
