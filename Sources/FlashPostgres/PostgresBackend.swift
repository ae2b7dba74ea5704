import FlashBackend
import FlashOrders
import FlashPayments
import FlashQueue
import Logging
import ServiceLifecycle

/// The distributed backend: one PostgreSQL database holds the `orders` topic, the `payments`
/// queue and its dead letters, the orders with their stock, the payment ledger and the fleet
/// registry, for any number of API and worker processes on any number of machines.
///
/// A Service, as postgres-nio's `PostgresClient` is: it owns the connection pool (which runs from
/// the moment the backend opens, so the process can set itself up before its service group
/// starts) and closes it at graceful shutdown, last in the group.
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
    let postgresLedger: PostgresPaymentLedger
    let registry: PostgresFleetRegistry

    /// Connects, migrates the schema and opens the queues and the topic.
    public init(configuration: Configuration, logger: Logger = Logger(label: "flashsale.postgres")) async throws {
        self.configuration = configuration
        let database = try await PostgresDatabase(configuration: configuration.database, logger: logger)
        do {
            let payments = try await database.createQueue(configuration.paymentsQueueName, attributes: configuration.paymentsQueue,
                                                           replacing: configuration.replaceQueueSettings)
            let topic = try await database.createTopic(configuration.topicName)
            try await topic.subscribe(queue: configuration.paymentsQueueName)
            self.payments = payments
            self.deadLetters = if let name = payments.deadLetterQueueName { try await database.queue(named: name) } else { nil }
            self.store = PostgresOrderStore(database: database, topic: topic, paymentsQueue: payments, strictCatalog: configuration.strictCatalog)
        } catch {
            await database.shutdown()
            throw error
        }
        self.database = database
        self.postgresLedger = PostgresPaymentLedger(database: database)
        self.registry = PostgresFleetRegistry(database: database)
    }

    public var orders: any OrderStore { store }
    public var paymentsQueueSettings: QueueAttributes { payments.attributes }
    public var catalog: any Catalog { store }
    public var deadLetterQueue: (any MessageQueue)? { deadLetters }
    public var ledger: any PaymentLedger { postgresLedger }
    public var fleet: any FleetRegistry { registry }

    public func existingQueue(named name: String) async throws -> (any MessageQueue)? {
        do {
            return try await database.queue(named: name)
        } catch QueueError.queueDoesNotExist {
            return nil
        }
    }

    /// Waits for graceful shutdown, then closes the pool (the services using it have stopped:
    /// the backend is first in the group, so last to shut down). On cancellation the pool is
    /// left open for services still giving messages back, until the process exits.
    public func run() async throws {
        try await gracefulShutdown()
        try await shutdown()
    }

    public func shutdown() async throws {
        await database.shutdown()
    }
}
