import FlashBackend
import FlashOrders
import FlashPayments
import FlashQueue
import Logging
import ServiceLifecycle

/// The distributed backend: one PostgreSQL database holds the `orders` topic, the `payments`
/// queue and its dead letters, the orders with their stock and the fleet
/// registry, for any number of API and worker processes on any number of machines.
///
/// Opened over a ``PostgresDatabase`` that runs (a Service before this one in the group; see
/// `FlashSystem.run`) and has been opened (``PostgresDatabase/open()``: migrations applied).
/// The backend owns none of the database's resources: its ``run()`` only marks its place in
/// the group, and ``shutdown()`` closes the database only when it was told to
/// (``Configuration/closesDatabase``), for code that runs no service group.
public final class PostgresBackend: FlashBackend {
    /// Everything the PostgreSQL backend can be told.
    public struct Configuration: Sendable {
        public var database: PostgresDatabase.Configuration
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
        /// Whether ``shutdown()`` shuts the database down too: false when the database runs as a
        /// Service of its own (the service group closes it after the backend), true for tools
        /// and tests that run it themselves.
        public var closesDatabase = false

        public init(database: PostgresDatabase.Configuration,
                    paymentsQueue: QueueAttributes = QueueAttributes(visibilityTimeout: .seconds(30), maxReceiveCount: 5),
                    strictCatalog: Bool = false) {
            self.database = database
            self.paymentsQueue = paymentsQueue
            self.strictCatalog = strictCatalog
        }
    }

    public let configuration: Configuration
    public let database: PostgresDatabase
    public let store: PostgresOrderStore
    public let payments: PostgresMessageQueue
    public let deadLetters: PostgresMessageQueue?
    let registry: PostgresFleetRegistry

    /// Opens the queues and the topic on `database`, which must run and be open.
    public init(database: PostgresDatabase, configuration: Configuration) async throws {
        self.configuration = configuration
        let payments = try await database.createQueue(configuration.paymentsQueueName, attributes: configuration.paymentsQueue,
                                                       replacing: configuration.replaceQueueSettings)
        let topic = try await database.createTopic(configuration.topicName)
        try await topic.subscribe(queue: configuration.paymentsQueueName)
        self.payments = payments
        self.deadLetters = if let name = payments.deadLetterQueueName { try await database.queue(named: name) } else { nil }
        self.store = PostgresOrderStore(database: database, topic: topic, paymentsQueue: payments, strictCatalog: configuration.strictCatalog)
        self.database = database
        self.registry = PostgresFleetRegistry(database: database)
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

    /// Waits for graceful shutdown, then closes the database if it owns it
    /// (``Configuration/closesDatabase``). Otherwise the database, a service before this one in
    /// the group, closes after it.
    public func run() async throws {
        try await gracefulShutdown()
        try await shutdown()
    }

    public func shutdown() async throws {
        if configuration.closesDatabase { await database.shutdown() }
    }
}
