import FlashCore
import FlashOrders
import FlashQueue
import ServiceLifecycle

/// Everything a process of flashsale stores, behind the core's protocols: orders with their
/// inventory, the payments queue and its dead letters, the fleet registry. (Not the payment
/// ledger: that is the payment provider's own store, which the composition root opens beside
/// the backend for the simulated gateway; see `FlashSystem`.)
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
    /// The payments queue's settings as stored: the fleet's, whatever this process asked for
    /// (see `replaceQueueSettings` in each backend's configuration).
    var paymentsQueueSettings: QueueAttributes { get }
    /// Products and stock.
    var catalog: any Catalog { get }
    /// The payments queue's dead-letter queue, if redrive is on.
    var deadLetterQueue: (any MessageQueue)? { get }
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
/// came free in time). What the call did is in ``outcome``: nothing at all, or (when the
/// connection was lost after the call's commit may have reached the server) unknown. Either way
/// it is not an acknowledgement, and a repeat with the same idempotency key returns the order if
/// it was stored. The API answers 503 with `Retry-After`, saying which of the two it is; workers
/// pause and try again. The backend reconnects by itself.
public struct BackendUnavailable: Error, Sendable, CustomStringConvertible {
    /// What a failed call did to the stored state.
    public enum Outcome: Sendable, Equatable {
        /// Nothing: the call's writes were refused or rolled back, or never sent.
        case notApplied
        /// Unknown: the connection was lost after the commit may have been sent.
        case unknown
    }

    /// What failed, for logs (never shown with credentials).
    public var reason: String
    /// When a client may try again.
    public var retryAfter: Duration
    /// Whether the call's writes are known not to have been stored.
    public var outcome: Outcome

    public init(reason: String, retryAfter: Duration = .seconds(1), outcome: Outcome = .notApplied) {
        self.reason = reason
        self.retryAfter = retryAfter
        self.outcome = outcome
    }

    public var description: String { "the database is unavailable: \(reason)" }
}

/// Refused before it reached a transaction: the work could not start by its admission deadline
/// (``FlashOrders/NewOrder/admitBy``), because the backend is slow or stalled and work waits
/// behind it. Nothing of it was stored, and nothing of it ever will be: the API answers 503
/// `overloaded` with `Retry-After`, and the client may repeat the request.
///
/// Admission control is a deadline on the time an order waits for the backend, in the manner of
/// CoDel's sojourn time, rather than an adaptive concurrency limit: the wait is what a client
/// feels, a deadline bounds it whatever the backend's speed (no limit to learn while a stall
/// begins), and it costs nothing while the backend keeps up. Work the line ahead would hold past
/// its deadline is refused on arrival rather than at the deadline (``FlashCore/LineForecast``):
/// under overload or a stall a refused client hears so at once, and the work waiting stays
/// within what the store can begin in one deadline.
public struct Overloaded: Error, Sendable, CustomStringConvertible {
    /// How long the work waited before it was refused (zero when refused on arrival).
    public var waited: Duration
    /// When a client may try again.
    public var retryAfter: Duration
    /// Refused on arrival (the line ahead foretold a wait past its deadline) or at its deadline.
    public var refusal: AdmissionLine.Refusal

    public init(waited: Duration, retryAfter: Duration = .seconds(1), refusal: AdmissionLine.Refusal = .deadline) {
        self.waited = waited
        self.retryAfter = retryAfter
        self.refusal = refusal
    }

    /// Refused on arrival: the work ahead of it would not let it begin by its deadline.
    public static var onArrival: Overloaded { Overloaded(waited: .zero, refusal: .forecast) }

    public var description: String {
        switch refusal {
        case .deadline:
            "the order store could not take the request within \(waited.shortDescription) (it is slow or stalled, and other work waits ahead)"
        case .forecast:
            "the order store could not take the request in time (the work waiting ahead of it, or a stalled store, would hold it past its admission deadline)"
        }
    }
}
