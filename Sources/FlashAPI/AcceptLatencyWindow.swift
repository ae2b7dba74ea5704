import Histogram
import Synchronization

/// The accept latency of this API process (`POST /orders/async` and `POST /buy` answered 2xx),
/// collected per interval: the dashboard takes the p50 and p99 of each second.
///
/// An HDR histogram (microseconds, 3 significant digits) under a lock: recording is O(1) and
/// allocation-free, and `take` reads and resets it once per interval.
public final class AcceptLatencyWindow: Sendable {
    /// The figures of one interval.
    public struct Figures: Sendable, Hashable {
        public var count: Int
        /// Median, in milliseconds; nil when nothing was accepted.
        public var p50Milliseconds: Double?
        public var p99Milliseconds: Double?
    }

    private let histogram = Mutex(Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three))

    public init() {}

    /// The routes whose latency is the accept latency.
    static let acceptRoutes: Set<String> = ["/orders/async", "/buy"]

    /// Records one answered request if it accepted an order.
    func observe(route: String, status: Int, duration: Duration) {
        guard (200..<300).contains(status), Self.acceptRoutes.contains(route) else { return }
        record(duration)
    }

    public func record(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let micros = max(0, min(60_000_000, seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
        histogram.withLock { _ = $0.record(UInt64(micros)) }
    }

    /// The figures since the last call, and a fresh start.
    public func take() -> Figures {
        histogram.withLock { histogram in
            defer { histogram.reset() }
            let count = Int(histogram.totalCount)
            guard count > 0 else { return Figures(count: 0, p50Milliseconds: nil, p99Milliseconds: nil) }
            let toMillis = { (micros: UInt64) in (Double(micros) / 10).rounded() / 100 }
            return Figures(count: count, p50Milliseconds: toMillis(histogram.valueAtPercentile(50)),
                           p99Milliseconds: toMillis(histogram.valueAtPercentile(99)))
        }
    }
}
