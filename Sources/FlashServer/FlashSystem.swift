import FlashAPI
import FlashBackend
import FlashCore
import FlashGateway
import FlashOrders
import FlashPayments
import FlashQueue
import FlashPostgres
import FlashSQLite
import FlashWorkers
import Hummingbird
import Logging
import ServiceLifecycle

/// One flashsale process, composed from a ``FlashConfiguration``: the backend, the simulated
/// gateway over the backend's ledger, the reconciler, the fleet membership, and by role the
/// worker pool and the API.
///
/// The only place that names a concrete backend: everything else sees ``FlashBackend``.
public struct FlashSystem: Sendable {
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
    /// The worker pool; nil when this process runs none.
    public let workers: WorkerPool?
    public let reconciler: Reconciler
    public let membership: FleetMembership
    /// What the HTTP routes work with.
    public let services: FlashServices

    /// Opens the backend and wires every component for `role`.
    public static func open(_ configuration: FlashConfiguration, role: Role = .server, logger: Logger) async throws -> FlashSystem {
        let paymentsQueue = QueueAttributes(visibilityTimeout: configuration.queue.visibilityTimeout,
                                            maxReceiveCount: configuration.queue.maxReceives,
                                            retention: configuration.queue.messageRetention)
        let backend: any FlashBackend
        if let postgres = configuration.backend.postgres {
            backend = try await PostgresBackend(configuration: .init(database: postgres, paymentsQueue: paymentsQueue,
                                                                     strictCatalog: configuration.backend.strictCatalog),
                                                logger: logger)
        } else {
            backend = try await SQLiteBackend(configuration: .init(
                path: configuration.backend.path, synchronous: configuration.backend.synchronous, paymentsQueue: paymentsQueue,
                strictCatalog: configuration.backend.strictCatalog, wakePoll: configuration.backend.wakePoll))
        }
        return compose(configuration, role: role, backend: backend, logger: logger)
    }

    /// Wires every component over an open backend.
    public static func compose(_ configuration: FlashConfiguration, role: Role, backend: any FlashBackend, logger: Logger) -> FlashSystem {
        let store = backend.orders
        let gateway: any PaymentGateway = if let remote = configuration.paymentURL {
            HTTPPaymentGateway(configuration: remote, logger: logger)
        } else {
            SimulatedPaymentGateway(configuration: configuration.payment, ledger: backend.ledger)
        }
        let processed = RateMeter()
        let accepted = RateMeter()
        let workers: WorkerPool? = configuration.workers.count > 0
            ? WorkerPool(configuration: .init(workers: configuration.workers.count, visibilityTimeout: configuration.queue.visibilityTimeout,
                                              retryBackoff: configuration.workers.retryBackoff,
                                              shutdownDeadline: configuration.workers.shutdownDeadline),
                         store: store, gateway: gateway, processed: processed, logger: logger)
            : nil
        let reconciler = Reconciler(
            configuration: .init(interval: configuration.workers.reconcileInterval), store: store,
            settler: OrderSettler(store: store, gateway: gateway), paymentsQueue: backend.paymentsQueue,
            deadLetterQueue: backend.deadLetterQueue, processed: processed, logger: logger)
        let kind: ProcessRecord.Kind = switch role {
        case .server: workers == nil ? .api : .server
        case .worker: .worker
        }
        let membership = FleetMembership(kind: kind, registry: backend.fleet, logger: logger) {
            FleetMembership.Load(workers: workers?.workerCount ?? 0, busy: workers?.busy ?? 0,
                                 acceptedPerSecond: accepted.perSecond, processedPerSecond: processed.perSecond)
        }
        let services = FlashServices(
            store: store, deadLetterQueue: backend.deadLetterQueue, gateway: gateway, membership: membership,
            reconciler: reconciler,
            lanes: CheckoutLanes(lanes: configuration.api.syncLanes, expectedServiceTime: configuration.payment.latency.mean),
            syncTimeout: configuration.api.syncTimeout, accepted: accepted, processed: processed, catalog: backend.catalog,
            admin: AdminPolicy(token: configuration.api.adminToken), flashProduct: configuration.api.flashProduct)
        return FlashSystem(configuration: configuration, role: role, backend: backend, gateway: gateway, workers: workers,
                           reconciler: reconciler, membership: membership, services: services)
    }

    /// Orders and their stock.
    public var store: any OrderStore { backend.orders }
    public var catalog: any Catalog { backend.catalog }
    public var ledger: any PaymentLedger { backend.ledger }
    public var paymentsQueue: any MessageQueue { backend.paymentsQueue }

    /// The long-running parts, in service-group order: the backend first (shut down last), the
    /// HTTP gateway client if any, then the reconciler, the membership and the worker pool (shut
    /// down first, after the server).
    public var runningServices: [any Service] {
        [backend] + ((gateway as? HTTPPaymentGateway).map { [$0] } ?? []) + [reconciler, membership] + (workers.map { [$0] } ?? [])
    }

    /// The HTTP application of this process: the order API (server role) or the side port's
    /// health and statistics (worker role), with ``runningServices`` in its service group.
    public func application(logger: Logger, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        buildApplication(services, routes: role == .server ? .all : .monitoring, host: configuration.http.host,
                         port: configuration.http.port, services: runningServices, logger: logger, onServerRunning: onServerRunning)
    }

    /// Closes the backend, for a system whose services never ran (tests, tools).
    public func close() async throws {
        try await (gateway as? HTTPPaymentGateway)?.shutdown()
        try await backend.shutdown()
    }
}
