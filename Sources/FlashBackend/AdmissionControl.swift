import FlashCore
import Metrics
import Synchronization

/// Admission control for the placing routes (`POST /orders/async`, `/buy`, `/orders/sync`):
/// each order gets a deadline by which its transaction must begin (``Overloaded``), and every
/// request refused without being stored is counted by why
/// (`flashsale_requests_shed_total{reason}`, `flashsale_admission_deadline_seconds`, and `/stats`).
public final class AdmissionControl: Sendable {
    /// Why a request was refused before anything of it was stored.
    public enum ShedReason: String, Sendable, CaseIterable, Codable {
        /// It could not begin its transaction by its admission deadline (``Overloaded``).
        case deadline
        /// The sync endpoint's checkout lanes predicted a wait past the sync timeout.
        case checkoutLanes = "checkout_lanes"
    }

    /// How long an order may wait for the store before it is refused.
    public let deadline: Duration
    private let counters: [ShedReason: Counter]
    private let counts = Mutex([ShedReason: Int]())

    /// - Parameters:
    ///   - deadline: how long an order may wait for the store (`--admission-deadline`).
    ///   - factory: where the shed counters are recorded.
    public init(deadline: Duration, factory: any MetricsFactory = NOOPMetricsHandler.instance) {
        self.deadline = deadline
        counters = Dictionary(uniqueKeysWithValues: ShedReason.allCases.map {
            ($0, Counter(label: "flashsale_requests_shed_total", dimensions: [("reason", $0.rawValue)], factory: factory))
        })
        Gauge(label: "flashsale_admission_deadline_seconds", factory: factory).record(deadline.asSeconds)
    }

    /// The admission deadline of an order arriving now.
    public func deadlineFromNow() -> ContinuousClock.Instant { .now + deadline }

    /// Counts a request refused for `reason`.
    public func recordShed(_ reason: ShedReason) {
        counters[reason]!.increment()
        counts.withLock { $0[reason, default: 0] += 1 }
    }

    /// Requests this process refused so far, by reason (every reason listed).
    public var shed: [String: Int] {
        let counts = counts.withLock { $0 }
        return Dictionary(uniqueKeysWithValues: ShedReason.allCases.map { ($0.rawValue, counts[$0] ?? 0) })
    }
}
