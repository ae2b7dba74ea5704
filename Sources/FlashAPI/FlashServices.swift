import FlashBackend
import FlashCore
import FlashOrders
import FlashPayments
import FlashQueue
import FlashTelemetry
import FlashWorkers
import Logging

/// What the composition root hands the HTTP layer. ``buildRouter(_:routes:)`` gives each
/// controller only the parts it uses.
public struct FlashServices: Sendable {
    /// Orders, their stock reservations and their payment messages (its `paymentsQueue` too).
    public var store: any OrderStore
    /// The payments queue's dead-letter queue, if any.
    public var deadLetterQueue: (any MessageQueue)?
    /// The payment gateway the sync endpoint charges.
    public var gateway: any PaymentGateway
    /// This process in the fleet: the live processes and their figures.
    public var membership: FleetMembership
    /// The reconciler (a purge settles the orders it orphans with it).
    public var reconciler: Reconciler?
    /// The sync endpoint's checkout lanes.
    public var lanes: CheckoutLanes
    /// How long a sync customer waits at most.
    public var syncTimeout: Duration
    /// The placing routes' admission deadline and shed counts.
    public var admission: AdmissionControl
    /// Products just refused as sold out, refused again at the edge.
    public var soldOut: SoldOutMemory
    /// Orders this process accepted per second (async and buy).
    public var accepted: RateMeter
    /// Orders this process finished per second.
    public var processed: RateMeter
    /// Products and stock; nil when the backend has no catalog.
    public var catalog: (any Catalog)?
    /// Who may call admin routes.
    public var admin: AdminPolicy
    /// The product sold by `POST /buy` (the seed engine's single product).
    public var flashProduct: String
    /// The backend's outbox, when the payments queue is elsewhere (SQS): its backlog is the
    /// relay's lag, shown in `/stats`.
    public var outbox: (any MessageQueue)?
    /// When the service started (Unix ms).
    public var startedAtMillis: Int64
    /// This process's metrics registry (`GET /metrics`).
    public var metrics: MetricsRegistry
    /// This process's order counters (in ``metrics``).
    public var orderMetrics: OrderMetrics
    /// This process's worker pool, if any (its size and busy workers are in ``metrics``).
    public var workers: WorkerPool?
    /// This process's accept latency, per second, for the dashboard.
    public var acceptLatency: AcceptLatencyWindow
    /// The dashboard's readings: a Service, to run in the process's service group.
    public var dashboard: DashboardFeed
    /// The payments queue's settings as the fleet stores them (nil: kept by SQS itself).
    public var queueSettings: QueueAttributes?

    /// Reads the fleet's figures for `/stats`, `/metrics` and the dashboard.
    public var statsReader: SystemStatsReader { dashboard.reader }

    public init(store: any OrderStore, deadLetterQueue: (any MessageQueue)? = nil, gateway: any PaymentGateway,
                membership: FleetMembership, reconciler: Reconciler? = nil, lanes: CheckoutLanes, syncTimeout: Duration,
                accepted: RateMeter = RateMeter(), processed: RateMeter, catalog: (any Catalog)? = nil,
                admin: AdminPolicy, flashProduct: String = "iphone_16",
                outbox: (any MessageQueue)? = nil, metrics: MetricsRegistry = MetricsRegistry(), orderMetrics: OrderMetrics? = nil,
                workers: WorkerPool? = nil, admissionDeadline: Duration = .seconds(2), queueSettings: QueueAttributes? = nil,
                logger: Logger = Logger(label: "flashsale")) {
        self.queueSettings = queueSettings
        self.store = store
        self.deadLetterQueue = deadLetterQueue
        self.gateway = gateway
        self.membership = membership
        self.reconciler = reconciler
        self.lanes = lanes
        self.syncTimeout = syncTimeout
        self.accepted = accepted
        self.processed = processed
        self.catalog = catalog
        self.admin = admin
        self.flashProduct = flashProduct
        self.outbox = outbox
        self.startedAtMillis = WallClock.nowMillis()
        self.metrics = metrics
        self.orderMetrics = orderMetrics ?? OrderMetrics(factory: metrics.factory)
        self.workers = workers
        self.soldOut = SoldOutMemory()
        let admission = AdmissionControl(deadline: admissionDeadline, line: store.admissionLine, factory: metrics.factory)
        self.admission = admission
        let acceptLatency = AcceptLatencyWindow()
        self.acceptLatency = acceptLatency
        let reader = SystemStatsReader(store: store, gateway: gateway, membership: membership, reconciler: reconciler,
                                       lanes: lanes, outbox: outbox, admission: admission)
        self.dashboard = DashboardFeed(reader: reader, catalog: catalog, product: flashProduct, latency: acceptLatency, logger: logger)
    }
}

/// Who may call the admin routes: holders of the admin secret, whatever their address (behind a
/// proxy or a sidecar, every client comes from loopback).
public struct AdminPolicy: Sendable {
    /// The secret admin requests must bear (`Authorization: Bearer …`).
    public var token: String

    public init(token: String) {
        precondition(!token.isEmpty, "the admin secret cannot be empty")
        self.token = token
    }
}
