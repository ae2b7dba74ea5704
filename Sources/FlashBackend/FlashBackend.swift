import FlashOrders
import FlashPayments
import FlashQueue
import ServiceLifecycle

/// Everything a process of flashsale stores, behind the core's protocols: orders with their
/// inventory, the payments queue and its dead letters, the payment ledger, the fleet registry.
///
/// A backend is a `Service` that owns its resources (files, connections): it runs until the
/// service group shuts down gracefully, then closes them. Put it first in a service group, so
/// that it is shut down last, after every component that uses it. Outside a service group,
/// call ``shutdown()``.
///
/// The SQLite backend (`FlashSQLite`) is the reference implementation. A new backend is a module
/// that implements this protocol and passes the contract suites (the queue's and the order
/// store's, in `Tests/`); the API and the worker pool see only these protocols.
/// See docs/ARCHITECTURE.md, "The backend contract".
public protocol FlashBackend: Service {
    /// Orders and their stock reservations; its `paymentsQueue` is the queue the workers read.
    var orders: any OrderStore { get }
    /// Products and stock.
    var catalog: any Catalog { get }
    /// The payments queue's dead-letter queue, if redrive is on.
    var deadLetterQueue: (any MessageQueue)? { get }
    /// The ledger behind the simulated payment gateway.
    var ledger: any PaymentLedger { get }
    /// The live processes sharing this backend.
    var fleet: any FleetRegistry { get }

    /// Another queue of this backend by name, if it has one (the start-up checks of the queue
    /// mode look for the other mode's queue).
    func existingQueue(named name: String) async throws -> (any MessageQueue)?

    /// Closes the backend's resources; idempotent. ``run()`` calls it at graceful shutdown.
    func shutdown() async throws
}

extension FlashBackend {
    /// The queue the payment messages go to.
    public var paymentsQueue: any MessageQueue { orders.paymentsQueue }
}

/// The backend cannot be reached now (its server restarts, the network is down, no connection
/// came free in time). The call that threw it stored nothing, unless its commit reached the
/// server and only the answer was lost: so it is not an acknowledgement either way, and a
/// repeat with the same idempotency key returns the order if it was stored. The API answers
/// 503 with `Retry-After`; workers pause and try again. The backend reconnects by itself.
public struct BackendUnavailable: Error, Sendable, CustomStringConvertible {
    /// What failed, for logs (never shown with credentials).
    public var reason: String
    /// When a client may try again.
    public var retryAfter: Duration

    public init(reason: String, retryAfter: Duration = .seconds(1)) {
        self.reason = reason
        self.retryAfter = retryAfter
    }

    public var description: String { "the database is unavailable: \(reason)" }
}
