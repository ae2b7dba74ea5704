import FlashBackend
import FlashOrders
import FlashPayments
import FlashQueue
import ServiceLifecycle
import Synchronization

/// The embedded backend: one SQLite file holds the `orders` topic, the `payments` queue and its
/// dead letters, the orders with their stock and the fleet registry. The simulated gateway's
/// ledger may share the file (``SQLitePaymentLedger``, opened on ``database`` by the composition
/// root), but it is not the backend's.
///
/// A Service (as postgres-nio's `PostgresClient` is): it owns the file, runs the cross-process
/// wake-up poll while the service group runs, and closes the file at graceful shutdown.
/// Several processes on one host may share the file (WAL); see ``Configuration/wakePoll``.
public final class SQLiteBackend: FlashBackend {
    /// Everything the SQLite backend can be told.
    public struct Configuration: Sendable {
        /// The database file.
        public var path: String
        public var synchronous: SQLiteDatabase.Synchronous
        /// The payments queue's settings (lease, receives before dead-lettering, retention).
        public var paymentsQueue: QueueAttributes
        /// Refuse items whose product is not in the catalog.
        public var strictCatalog: Bool
        /// The topic placed orders publish their payment messages to, and the queue subscribed
        /// to it: `orders` and `payments`, or an outbox's when the queue the workers read is
        /// elsewhere (SQS).
        public var topicName = "orders"
        public var paymentsQueueName = "payments"
        /// Whether ``paymentsQueue`` replaces the settings of a payments queue that exists; when
        /// false (the default) the stored settings hold (see ``paymentsQueueSettings``): one
        /// setting for every process of the fleet.
        public var replaceQueueSettings = false
        /// How often this process looks for commits by other processes on the file, to wake its
        /// long-polling receivers (``SQLiteDatabase/watchOtherProcesses(every:)``).
        public var wakePoll: Duration

        public init(path: String = "./flashsale.db", synchronous: SQLiteDatabase.Synchronous = .full,
                    paymentsQueue: QueueAttributes = QueueAttributes(visibilityTimeout: .seconds(30), maxReceiveCount: 5),
                    strictCatalog: Bool = false, wakePoll: Duration = .milliseconds(50)) {
            self.path = path
            self.synchronous = synchronous
            self.paymentsQueue = paymentsQueue
            self.strictCatalog = strictCatalog
            self.wakePoll = wakePoll
        }
    }

    public let configuration: Configuration
    /// The open file (for SQLite-specific tools: the queue bench, writer statistics).
    public let database: SQLiteDatabase
    public let store: SQLiteOrderStore
    public let payments: SQLiteMessageQueue
    public let deadLetters: SQLiteMessageQueue?
    public let registry: SQLiteFleetRegistry
    private let closed = Mutex(false)

    /// Opens (or creates) the file and the queues, topic and tables in it.
    public init(configuration: Configuration) async throws {
        self.configuration = configuration
        let database = try SQLiteDatabase(path: configuration.path, synchronous: configuration.synchronous)
        let payments = try await database.createQueue(configuration.paymentsQueueName, attributes: configuration.paymentsQueue,
                                                           replacing: configuration.replaceQueueSettings)
        let topic = try await database.createTopic(configuration.topicName)
        try await topic.subscribe(queue: configuration.paymentsQueueName)
        self.database = database
        self.payments = payments
        self.deadLetters = if let name = payments.deadLetterQueueName { try await database.queue(named: name) } else { nil }
        self.store = try await SQLiteOrderStore(database: database, topic: topic, paymentsQueue: payments,
                                                strictCatalog: configuration.strictCatalog)
        self.registry = SQLiteFleetRegistry(database: database)
    }

    public var orders: any OrderStore { store }
    public var paymentsQueueSettings: QueueAttributes { payments.attributes }
    public var catalog: any Catalog { store }
    public var deadLetterQueue: (any MessageQueue)? { deadLetters }
    public var fleet: any FleetRegistry { registry }

    public func existingQueue(named name: String) async throws -> (any MessageQueue)? {
        do {
            return try await database.queue(named: name)
        } catch QueueError.queueDoesNotExist {
            return nil
        }
    }

    /// Polls for other processes' commits until graceful shutdown, then closes the file (the
    /// services that use it have stopped by then: the backend is first in the group, so last
    /// to shut down). When the group is cancelled instead, every service stops at once and some
    /// may still be giving messages back: the file is then left open, for them, until the
    /// process exits.
    public func run() async throws {
        try await cancelWhenGracefulShutdown { [database, configuration] in
            try await database.watchOtherProcesses(every: configuration.wakePoll)
        }
        if Task.isShuttingDownGracefully { try await shutdown() }
    }

    public func shutdown() async throws {
        guard !closed.withLock({ closed in defer { closed = true }; return closed }) else { return }
        try database.close()
    }
}
