import FlashCore
import Metrics
import Synchronization

/// Admission control for the placing routes (`POST /orders/async`, `/buy`, `/orders/sync`):
/// each order gets a deadline by which its transaction must begin (``Overloaded``), the store's
/// ``AdmissionLine`` refuses on arrival those it foretells would miss it, and every request
/// refused without being stored is counted by why (`flashsale_requests_shed_total{reason}`).
/// The deadline, the line's current limit and the placements' waits for their transaction
/// (queue time) are in `/metrics` (`flashsale_admission_deadline_seconds`,
/// `flashsale_admission_limit`, `flashsale_admission_wait_seconds`) and `/stats`.
public final class AdmissionControl: Sendable {
    /// Why a request was refused before anything of it was stored.
    public enum ShedReason: String, Sendable, CaseIterable, Codable {
        /// It could not begin its transaction by its admission deadline (``Overloaded``).
        case deadline
        /// Refused on arrival: the store's line foretold it would not begin by its deadline.
        case forecast
        /// The sync endpoint's checkout lanes predicted a wait past the sync timeout.
        case checkoutLanes = "checkout_lanes"
    }

    /// How long an order may wait for the store before it is refused.
    public let deadline: Duration
    /// The store's line, if it has one.
    public let line: AdmissionLine?
    private let counters: [ShedReason: Counter]
    private let counts = Mutex([ShedReason: Int]())

    /// - Parameters:
    ///   - deadline: how long an order may wait for the store (`--admission-deadline`).
    ///   - line: the store's line: its placements' waits are recorded from now on.
    ///   - factory: where the shed counters and the waits are recorded.
    public init(deadline: Duration, line: AdmissionLine? = nil, factory: any MetricsFactory = NOOPMetricsHandler.instance) {
        self.deadline = deadline
        self.line = line
        if let line {
            let waits = Timer(label: "flashsale_admission_wait_seconds", factory: factory)
            line.observeWaits { waits.recordNanoseconds(Int64($0.asSeconds * 1e9)) }
        }
        counters = Dictionary(uniqueKeysWithValues: ShedReason.allCases.map {
            ($0, Counter(label: "flashsale_requests_shed_total", dimensions: [("reason", $0.rawValue)], factory: factory))
        })
        Gauge(label: "flashsale_admission_deadline_seconds", factory: factory).record(deadline.asSeconds)
    }

    /// The admission deadline of an order arriving now.
    public func deadlineFromNow() -> ContinuousClock.Instant { .now + deadline }

    /// The store's line now, for placements that may wait ``deadline``; nil without a line.
    public var lineStatus: AdmissionLine.Status? { line?.status(patience: deadline) }

    /// This process's admission control for `/stats`.
    public var statistics: SystemStats.Admission {
        let status = lineStatus
        return SystemStats.Admission(deadlineSeconds: deadline.asSeconds, shed: shed, limit: status?.limit,
                                     groupSeconds: status?.groupTime.map(\.asSeconds), stalled: status?.stalled ?? false,
                                     longestWaitSeconds: status?.longestRecentWait.asSeconds ?? 0)
    }

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
