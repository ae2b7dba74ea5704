import FlashCore
import FlashOrders
import FlashPayments
import FlashQueue
import FlashWorkers

/// Everything the API works with, behind the component protocols (DESIGN.md).
public struct FlashServices: Sendable {
    /// Orders, their stock reservations and their payment messages.
    public var store: any OrderStore
    /// The queue the workers read (for statistics).
    public var paymentsQueue: any MessageQueue
    /// Its dead-letter queue, if any.
    public var deadLetterQueue: (any MessageQueue)?
    /// The payment gateway the sync endpoint charges.
    public var gateway: any PaymentGateway
    /// The in-process worker pool, if this process runs one.
    public var workers: WorkerPool?
    /// The reconciler, if this process runs one (a purge settles the orders it orphans with it).
    public var reconciler: Reconciler?
    /// The sync endpoint's checkout lanes.
    public var lanes: CheckoutLanes
    /// How long a sync customer waits at most.
    public var syncTimeout: Duration
    /// Orders accepted per second (async and buy).
    public var accepted: RateMeter
    /// Orders finished per second.
    public var processed: RateMeter
    /// Products and stock; nil when the store has no catalog.
    public var catalog: (any Catalog)?
    /// Who may call admin routes.
    public var admin: AdminPolicy
    /// The product sold by `POST /buy` (the seed engine's single product).
    public var flashProduct: String
    /// When the service started (Unix ms).
    public var startedAtMillis: Int64

    public init(store: any OrderStore, paymentsQueue: any MessageQueue, deadLetterQueue: (any MessageQueue)? = nil, gateway: any PaymentGateway, workers: WorkerPool?,
                reconciler: Reconciler? = nil, lanes: CheckoutLanes, syncTimeout: Duration, accepted: RateMeter = RateMeter(), processed: RateMeter,
                catalog: (any Catalog)? = nil, admin: AdminPolicy = AdminPolicy(token: nil), flashProduct: String = "iphone_16") {
        self.store = store
        self.paymentsQueue = paymentsQueue
        self.deadLetterQueue = deadLetterQueue
        self.gateway = gateway
        self.workers = workers
        self.reconciler = reconciler
        self.lanes = lanes
        self.syncTimeout = syncTimeout
        self.accepted = accepted
        self.processed = processed
        self.catalog = catalog
        self.admin = admin
        self.flashProduct = flashProduct
        self.startedAtMillis = WallClock.nowMillis()
    }
}

/// Who may call the admin routes: bearer-token holders when a token is set, else loopback clients.
public struct AdminPolicy: Sendable {
    /// The token admin requests must bear (`Authorization: Bearer …`); nil means loopback only.
    public var token: String?

    public init(token: String?) {
        self.token = token?.isEmpty == true ? nil : token
    }
}
