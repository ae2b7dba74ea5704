import FlashAPI
import FlashAWS
import FlashBackend
import FlashCore
import FlashGateway
import FlashOrders
import FlashOutbox
import FlashPayments
import FlashQueue
import FlashPostgres
import FlashSQLite
import FlashTelemetry
import FlashWorkers
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals

/// One flashsale process, composed from a ``FlashConfiguration``: the backend, the simulated
/// gateway over its ledger beside the backend, the reconciler, the fleet membership, and by role the
/// worker pool and the API.
///
/// The only place that names a concrete backend: everything else sees ``FlashBackend``.
///
/// A class: the composition root is one thing that owns its parts, not a value to copy. (As a
/// struct of this size it was also destroyed wrongly at the end of `ServeCommand.run()` by
/// Swift 6.3.1's debug build, a crash at every exit, once ``FlashServices`` grew one field.)
public final class FlashSystem: Sendable {
    /// What this process runs.
    public enum Role: Sendable {
        /// `flashsale serve`: the API, and a worker pool when `workers.count > 0`.
        case server
        /// `flashsale worker`: the worker pool only (with `/health`, `/stats` and `/workers` on a
        /// side port when one is given).
        case worker
    }

    public let configuration: FlashConfiguration
    public let role: Role
    public let backend: any FlashBackend
    public let gateway: any PaymentGateway
    /// The ledger of the simulated gateway this process runs (in the backend's store, but the
    /// gateway's, not the order store's); unused, and empty, when `--payment-url` names another.
    public let ledger: any PaymentLedger
    /// The HTTP client of the gateway `--payment-url` names: a Service of this process.
    let remoteGateway: HTTPPaymentGateway?
    /// The worker pool; nil when this process runs none.
    public let workers: WorkerPool?
    public let reconciler: Reconciler
    public let membership: FleetMembership
    /// Publishes the backend's outbox to SQS or SNS (with ``FlashConfiguration/sqs``).
    public let relay: OutboxRelay?
    /// What the HTTP routes work with.
    public let services: FlashServices
    /// The database ``close()`` shuts down: one ``open(_:role:logger:)`` runs itself.
    let ownedDatabase = Mutex<PostgresDatabase?>(nil)

    init(configuration: FlashConfiguration, role: Role, backend: any FlashBackend, ledger: any PaymentLedger, gateway: any PaymentGateway,
         remoteGateway: HTTPPaymentGateway?, workers: WorkerPool?, reconciler: Reconciler, membership: FleetMembership, relay: OutboxRelay?,
         services: FlashServices) {
        self.configuration = configuration
        self.role = role
        self.ledger = ledger
        self.remoteGateway = remoteGateway
        self.backend = backend
        self.gateway = gateway
        self.workers = workers
        self.reconciler = reconciler
        self.membership = membership
        self.relay = relay
        self.services = services
    }

    /// Runs one process: opens the system `configuration` describes for `role`, runs `body` with
    /// it (a server's or a worker's service group, a test, a benchmark), closes it, and returns
    /// what `body` returned: nil when a graceful shutdown came before the system was open.
    ///
    /// Everything runs in one service group, in the order the reference clients ask for: the
    /// PostgreSQL database first (its pool, LISTEN session and NOTIFY sender; stopped last),
    /// then the process. The process opens the database (checks it, applies the migrations) and
    /// its backend before `body` starts a server, and a graceful shutdown (one of
    /// `gracefulShutdownSignals`) reaches the service group `body` runs, as a nested group.
    public static func run<T: Sendable>(_ configuration: FlashConfiguration, role: Role = .server, logger: Logger,
                                        gracefulShutdownSignals: [UnixSignal] = [],
                                        _ body: @escaping @Sendable (FlashSystem) async throws -> T) async throws -> T? {
        let database = configuration.backend.postgres.map { PostgresDatabase(configuration: $0, logger: logger) }
        let result = Mutex<T?>(nil)
        let process = ProcessService {
            // A shutdown asked for while the database cannot be reached yet ends the wait, and
            // the process, without an error.
            let system: FlashSystem
            do {
                system = try await cancelWhenGracefulShutdown {
                    try await open(configuration, role: role, database: database, logger: logger)
                }
            } catch where Task.isShuttingDownGracefully {
                return
            }
            do {
                let value = try await body(system)
                result.withLock { $0 = value }
            } catch {
                try? await system.close()
                throw error
            }
            try await system.close()
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let database { services.append(.init(service: database, successTerminationBehavior: .gracefullyShutdownGroup)) }
        services.append(.init(service: process, successTerminationBehavior: .gracefullyShutdownGroup))
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: gracefulShutdownSignals, logger: logger))
        try await group.run()
        return result.withLock { $0 }
    }

    /// Opens a system for code that runs no service group around it (tests, benchmarks): with
    /// PostgreSQL, its database runs in a task of its own, which ``close()`` ends and waits for.
    /// A process uses ``run(_:role:logger:gracefulShutdownSignals:_:)``.
    public static func open(_ configuration: FlashConfiguration, role: Role = .server, logger: Logger) async throws -> FlashSystem {
        guard let postgres = configuration.backend.postgres else { return try await open(configuration, role: role, database: nil, logger: logger) }
        let database = PostgresDatabase(configuration: postgres, logger: logger)
        // Ended, and waited for, by ``close()``.
        Task { await database.run() }
        do {
            let system = try await open(configuration, role: role, database: database, logger: logger)
            system.ownedDatabase.withLock { $0 = database }
            return system
        } catch {
            await database.shutdown()
            throw error
        }
    }

    /// Opens the backend (and, with ``FlashConfiguration/sqs``, the SQS queue and SNS topic)
    /// and wires every component for `role`.
    ///
    /// A database (or, with SQS, AWS) that cannot be reached yet (starting, restarting,
    /// stalled) is tried again,
    /// with a warning each time, for up to ``BackendConfiguration/startupWait``: a process
    /// restarted during a database outage comes up when the database does, as the processes
    /// already running ride the outage out, rather than exiting and leaving its deliveries and
    /// its share of the work to nobody. Anything else (a wrong URL, password, schema or queue
    /// setting) fails at once.
    ///
    /// A server resolves its admin secret first (``AdminSecret``: given, read, or generated into
    /// a file beside the database), into ``FlashConfiguration/api``; a worker, which serves no
    /// admin route, gets a random one.
    static func open(_ configuration: FlashConfiguration, role: Role, database: PostgresDatabase?, logger: Logger) async throws -> FlashSystem {
        var configuration = configuration
        if role == .server {
            let secret = try AdminSecret.resolve(token: configuration.api.adminToken, file: configuration.api.adminTokenFile,
                                                 dataPath: configuration.backend.path)
            configuration.api.adminToken = secret.token
            configuration.api.adminTokenSource = secret.source
        } else {
            configuration.api.adminToken = TimeOrderedID.make() + TimeOrderedID.make()
        }
        let deadline = ContinuousClock.now + configuration.backend.startupWait
        var delay = Duration.milliseconds(250)
        while true {
            do {
                return try await openOnce(configuration, role: role, database: database, logger: logger)
            } catch where isUnreachable(error) && ContinuousClock.now + delay < deadline {
                logger.warning("the database (or AWS) cannot be reached yet; trying again", metadata: [
                    "database": "\(configuration.backend.location)",
                    "error": "\(error)", "retry_in": "\(delay.shortDescription)",
                ])
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    /// Whether a failed open may succeed when tried again: the database, or AWS, did not answer.
    static func isUnreachable(_ error: any Error) -> Bool {
        if error is BackendUnavailable { return true }
        if let aws = error as? AWSError { return aws.isTransient }
        if let startup = error as? PostgresDatabase.StartupError { return startup.isUnreachable }
        return false
    }

    private static func openOnce(_ configuration: FlashConfiguration, role: Role, database: PostgresDatabase?,
                                 logger: Logger) async throws -> FlashSystem {
        var configuration = configuration
        // Checks the server and applies the migrations: before this process serves anything.
        try await database?.open()
        var (backend, ledger) = try await openBackend(configuration, database: database, replacingQueueSettings: false, logger: logger)
        // --reconfigure-queue: the stored settings with this process's stated ones in their place.
        if configuration.queue.reconfigure, configuration.sqs == nil {
            let stored = backend.paymentsQueueSettings
            let merged = configuration.queue.merged(into: stored)
            if merged.visibilityTimeout != stored.visibilityTimeout || merged.maxReceives != stored.maxReceiveCount
                || merged.messageRetention != stored.retention {
                try? await backend.shutdown()
                configuration.queue = merged
                (backend, ledger) = try await openBackend(configuration, database: database, replacingQueueSettings: true, logger: logger)
            }
        }
        do {
            try await checkQueueMode(of: backend, sqs: configuration.sqs != nil)
            // The backend's own payments queue: its stored settings are the fleet's. (SQS keeps
            // its queue's settings itself: `setup-aws`.)
            if configuration.sqs == nil {
                let asked = configuration.queue
                configuration.queue = try asked.adopting(backend.paymentsQueueSettings)
                if configuration.queue.visibilityTimeout != asked.visibilityTimeout || configuration.queue.maxReceives != asked.maxReceives
                    || configuration.queue.messageRetention != asked.messageRetention {
                    logger.info("payments queue settings as stored for the fleet", metadata: [
                        "visibility_timeout": "\(configuration.queue.visibilityTimeout.shortDescription)",
                        "max_receives": "\(configuration.queue.maxReceives)",
                        "message_retention": "\(configuration.queue.messageRetention.shortDescription)",
                    ])
                } else if asked.reconfigure {
                    logger.warning("payments queue settings stored for the whole fleet", metadata: [
                        "visibility_timeout": "\(asked.visibilityTimeout.shortDescription)", "max_receives": "\(asked.maxReceives)",
                        "message_retention": "\(asked.messageRetention.shortDescription)",
                    ])
                }
            }
        } catch {
            try? await backend.shutdown()
            throw error
        }
        guard let sqs = configuration.sqs else { return compose(configuration, role: role, backend: backend, ledger: ledger, logger: logger) }
        do {
            let route = try await PaymentsRoute.sqs(sqs, backend: backend, logger: logger)
            return compose(configuration, role: role, backend: backend, ledger: ledger, route: route, logger: logger)
        } catch {
            try? await backend.shutdown()
            throw error
        }
    }

    /// The backend `configuration` names (on `database`, running and open, for PostgreSQL), its
    /// payments queue created with this process's settings, or opened with the stored ones
    /// (unless `replacingQueueSettings`); and beside it, in the same store, the ledger of the
    /// simulated gateway this process runs when no `--payment-url` names another.
    static func openBackend(_ configuration: FlashConfiguration, database: PostgresDatabase?, replacingQueueSettings: Bool,
                            logger: Logger) async throws -> (any FlashBackend, any PaymentLedger) {
        var paymentsQueue = QueueAttributes(visibilityTimeout: configuration.queue.visibilityTimeout,
                                            maxReceiveCount: configuration.queue.maxReceives,
                                            retention: configuration.queue.messageRetention)
        // With SQS, the backend's queue is the outbox: messages wait there only until the relay
        // has published them, so none is dead-lettered or dropped (SQS's own queue does both).
        let names = configuration.sqs == nil ? ("orders", "payments") : ("outbox-orders", "outbox")
        if configuration.sqs != nil {
            paymentsQueue = QueueAttributes(visibilityTimeout: .seconds(30), maxReceiveCount: 0, retention: QueueLimits.maxRetention)
        }
        if let database {
            var options = PostgresBackend.Configuration(database: database.configuration, paymentsQueue: paymentsQueue,
                                                        strictCatalog: configuration.backend.strictCatalog)
            (options.topicName, options.paymentsQueueName) = names
            options.replaceQueueSettings = replacingQueueSettings
            return (try await PostgresBackend(database: database, configuration: options), PostgresPaymentLedger(database: database))
        }
        var options = SQLiteBackend.Configuration(
            path: configuration.backend.path, synchronous: configuration.backend.synchronous, paymentsQueue: paymentsQueue,
            strictCatalog: configuration.backend.strictCatalog, wakePoll: configuration.backend.wakePoll)
        (options.topicName, options.paymentsQueueName) = names
        options.replaceQueueSettings = replacingQueueSettings
        let backend = try await SQLiteBackend(configuration: options)
        return (backend, SQLitePaymentLedger(database: backend.database))
    }

    /// Refuses to mix queue modes on one backend. A local-mode process would take every order
    /// whose message went to SQS for an orphan (its scan looks in the local queue) and fail it;
    /// an SQS-mode process would leave the local queue's messages to nobody.
    static func checkQueueMode(of backend: any FlashBackend, sqs: Bool) async throws {
        if sqs {
            if let local = try await backend.existingQueue(named: "payments") {
                let left = try await local.statistics().total
                if left > 0 {
                    throw QueueModeMismatch(description: "this database's own payments queue still holds \(left) messages: let processes "
                        + "without --queue sqs finish them (GET /stats shows the queue) before starting with --queue sqs")
                }
            }
        } else if try await backend.existingQueue(named: "outbox") != nil {
            throw QueueModeMismatch(description: "this database sends its orders to SQS (--queue sqs): start every process on it "
                + "with the same --queue, --queue-url and --topic-arn")
        }
    }

    /// Where payment messages go and who reads them: the backend's own queue, or SQS behind an
    /// outbox.
    public struct PaymentsRoute: Sendable {
        public var store: any OrderStore
        public var deadLetterQueue: (any MessageQueue)?
        /// Publishes the outbox (SQS only).
        public var relay: OutboxRelay?

        /// The backend's own queue and dead letters.
        public static func local(_ backend: any FlashBackend) -> PaymentsRoute {
            PaymentsRoute(store: backend.orders, deadLetterQueue: backend.deadLetterQueue, relay: nil)
        }

        /// The SQS queue (checked to exist), its dead-letter queue from its redrive policy, and a
        /// relay from the backend's outbox to the SNS topic (checked too) or to the queue.
        public static func sqs(_ sqs: SQSConfiguration, backend: any FlashBackend, logger: Logger) async throws -> PaymentsRoute {
            let queue = try await SQSQueues(configuration: sqs.aws).open(url: sqs.queueURL)
            let destination: any MessagePublisher = if let arn = sqs.topicARN {
                try await SNSTopics(configuration: sqs.aws).open(arn: arn)
            } else {
                queue
            }
            let fence = PurgeFence(registry: backend.fleet)
            let store = OutboxOrderStore(local: backend.orders, paymentsQueue: queue, retention: queue.retention, fence: fence)
            let relay = OutboxRelay(configuration: .init(concurrency: sqs.relayConcurrency), outbox: store.outbox,
                                    destination: destination, fence: fence, logger: logger)
            return PaymentsRoute(store: store, deadLetterQueue: queue.deadLetterQueue, relay: relay)
        }
    }

    /// Wires every component over an open backend.
    public static func compose(_ configuration: FlashConfiguration, role: Role, backend: any FlashBackend, ledger: any PaymentLedger,
                               route: PaymentsRoute? = nil, logger: Logger) -> FlashSystem {
        let route = route ?? .local(backend)
        let store = route.store
        let remoteGateway = configuration.paymentURL.map { HTTPPaymentGateway(configuration: $0, logger: logger) }
        let baseGateway: any PaymentGateway = remoteGateway ?? SimulatedPaymentGateway(configuration: configuration.payment, ledger: ledger)
        let metrics = MetricsRegistry()
        let orderMetrics = OrderMetrics(factory: metrics.factory)
        let gateway = InstrumentedPaymentGateway(baseGateway, factory: metrics.factory)
        let processed = RateMeter()
        let accepted = RateMeter()
        var scaling = configuration.workers.scaling
        scaling?.expectedServiceTime = configuration.paymentURL?.expectedLatency ?? configuration.payment.latency.mean
        let fleet = backend.fleet
        let processID = ProcessRecord.makeID()
        let staleAfter = FleetMembership.Configuration().staleAfter
        var poolConfiguration = WorkerPool.Configuration(workers: configuration.workers.count, visibilityTimeout: configuration.queue.visibilityTimeout,
                                                         retryBackoff: configuration.workers.retryBackoff,
                                                         shutdownDeadline: configuration.workers.shutdownDeadline, scaling: scaling)
        poolConfiguration.actor = "a worker in process \(processID)"
        let workers: WorkerPool? = configuration.workers.count > 0 || scaling != nil
            ? WorkerPool(configuration: poolConfiguration,
                         store: store, gateway: gateway, processed: processed, orderMetrics: orderMetrics,
                         fleet: {
                             // Processes that run workers, from their heartbeats (this one's is
                             // among them after its first).
                             guard let live = try? await fleet.processes(heartbeatSince: WallClock.nowMillis() - staleAfter.asMilliseconds)
                             else { return WorkerPool.FleetShare() }
                             let pools = live.filter { $0.kind != .api }
                             let others = pools.filter { $0.id != processID }
                             return WorkerPool.FleetShare(processes: others.count + 1, othersBusy: others.reduce(0) { $0 + $1.busy })
                         }, paused: { [pauses = QueuePause(registry: fleet), queue = store.paymentsQueue.name] in
                             try await pauses.state(of: queue).paused
                         }, logger: logger)
            : nil
        var reconcilerConfiguration = Reconciler.Configuration(interval: configuration.workers.reconcileInterval,
                                                               deadLetterHold: configuration.queue.deadLetterHold)
        reconcilerConfiguration.actor = "the reconciler in process \(processID)"
        let reconciler = Reconciler(
            configuration: reconcilerConfiguration, store: store,
            settler: OrderSettler(store: store, gateway: gateway), paymentsQueue: store.paymentsQueue,
            deadLetterQueue: route.deadLetterQueue, processed: processed, orderMetrics: orderMetrics, logger: logger)
        let kind: ProcessRecord.Kind = switch role {
        case .server: workers == nil ? .api : .server
        case .worker: .worker
        }
        let membership = FleetMembership(processID: processID, kind: kind, registry: backend.fleet, logger: logger) {
            FleetMembership.Load(workers: workers?.workerCount ?? 0, busy: workers?.busy ?? 0,
                                 acceptedPerSecond: accepted.perSecond, processedPerSecond: processed.perSecond)
        }
        let services = FlashServices(
            store: store, deadLetterQueue: route.deadLetterQueue, gateway: gateway, membership: membership,
            reconciler: reconciler,
            lanes: CheckoutLanes(lanes: configuration.api.syncLanes, expectedServiceTime: configuration.payment.latency.mean),
            syncTimeout: configuration.api.syncTimeout, accepted: accepted, processed: processed, catalog: backend.catalog,
            admin: AdminPolicy(token: configuration.api.adminToken ?? ""), flashProduct: configuration.api.flashProduct,
            outbox: route.relay == nil ? nil : backend.paymentsQueue, metrics: metrics, orderMetrics: orderMetrics, workers: workers,
            admissionDeadline: configuration.api.admissionDeadline,
            queueSettings: configuration.sqs == nil ? backend.paymentsQueueSettings : nil, logger: logger)
        return FlashSystem(configuration: configuration, role: role, backend: backend, ledger: ledger, gateway: baseGateway,
                           remoteGateway: remoteGateway, workers: workers, reconciler: reconciler, membership: membership, relay: route.relay,
                           services: services)
    }

    /// Orders and their stock.
    public var store: any OrderStore { services.store }
    public var catalog: any Catalog { backend.catalog }
    public var paymentsQueue: any MessageQueue { services.store.paymentsQueue }

    /// The long-running parts, in service-group order: the backend first (shut down last), the
    /// outbox relay (which publishes until the API has stopped accepting), the HTTP gateway
    /// client if any, then the reconciler, the membership, the dashboard's feed (API only) and
    /// the worker pool (shut down first, after the server).
    public var runningServices: [any Service] {
        [backend] + (relay.map { [$0] } ?? []) + (remoteGateway.map { [$0] } ?? [])
            + [reconciler, membership] + (role == .server ? [services.dashboard] : []) + (workers.map { [$0] } ?? [])
    }

    /// The HTTP application of this process: the order API (server role) or the side port's
    /// health and statistics (worker role), with ``runningServices`` in its service group.
    public func application(logger: Logger, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        buildApplication(services, routes: role == .server ? .all : .monitoring, host: configuration.http.host,
                         port: configuration.http.port, limits: configuration.http.limits, services: runningServices, logger: logger,
                         onServerRunning: onServerRunning)
    }

    /// Closes the backend, for a system whose services never ran (tests, tools).
    public func close() async throws {
        try await remoteGateway?.shutdown()
        try await backend.shutdown()
        await ownedDatabase.withLock { $0 }?.shutdown()
    }
}

/// The process itself as a Service: what ``FlashSystem/run(_:role:logger:gracefulShutdownSignals:_:)``
/// runs after the database.
private struct ProcessService: Service {
    var body: @Sendable () async throws -> Void

    init(_ body: @escaping @Sendable () async throws -> Void) {
        self.body = body
    }

    func run() async throws {
        try await body()
    }
}

/// A process was started in another queue mode than the database is used with.
public struct QueueModeMismatch: Error, CustomStringConvertible {
    public var description: String
}
