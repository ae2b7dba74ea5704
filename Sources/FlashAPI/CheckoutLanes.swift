import FlashCore
import Synchronization

/// The synchronous endpoint's checkout lanes: N customers at a time at the payment gateway, the
/// rest waiting in line (the seeds' bottleneck: one lane, 3 s each).
///
/// Better than the seeds: it predicts each newcomer's wait from the line's length and the mean
/// charge time, so a customer who would time out anyway is told at once (503, `Retry-After`).
public final class CheckoutLanes: Sendable {
    private let semaphore: AsyncSemaphore
    private let meanServiceNanos: Atomic<Int64>

    /// - Parameters:
    ///   - lanes: charges at once.
    ///   - expectedServiceTime: the charge time assumed until charges are measured.
    public init(lanes: Int, expectedServiceTime: Duration) {
        semaphore = AsyncSemaphore(permits: max(1, lanes))
        meanServiceNanos = Atomic(max(1, Int64(expectedServiceTime.asSeconds * 1e9)))
    }

    /// Lanes in all.
    public var lanes: Int { semaphore.permits }
    /// Customers waiting for a lane.
    public var waiting: Int { semaphore.waiting }
    /// Lanes in use.
    public var busy: Int { semaphore.inUse }

    /// How long a customer arriving now would wait for a lane.
    public var predictedWait: Duration {
        let ahead = semaphore.waiting + semaphore.inUse
        guard ahead >= lanes else { return .zero }
        let rounds = (ahead - lanes) / lanes + 1
        return .nanoseconds(meanServiceNanos.load(ordering: .relaxed) * Int64(rounds))
    }

    /// Waits for a lane, at most `timeout`. False when it timed out (no lane held).
    public func enter(timeout: Duration) async -> Bool {
        await semaphore.acquire(timeout: timeout)
    }

    /// Frees a lane, recording how long its charge took.
    public func leave(serviceTime: Duration?) {
        if let serviceTime {
            // Exponentially weighted mean, weight 1/8 for the newest charge.
            let sample = Int64(serviceTime.asSeconds * 1e9)
            let old = meanServiceNanos.load(ordering: .relaxed)
            meanServiceNanos.store(max(1, old + (sample - old) / 8), ordering: .relaxed)
        }
        semaphore.release()
    }
}
