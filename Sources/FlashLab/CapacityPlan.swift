import Foundation

/// The capacity arithmetic of the seeds' phase 2, in closed form.
///
/// W workers that each take S seconds per order serve c = W / S orders per second. Demand λ for a
/// sale of T seconds then leaves (λ − c)·T orders queued at its end, which drain in
/// (λ − c)·T / c seconds. Little's law gives λ·S workers busy on average: the minimum for no
/// backlog. Any input size is arithmetic, so a million orders per second is instant.
public struct CapacityPlan: Sendable, Hashable, Codable {
    /// Orders per second arriving during the sale (λ).
    public var demand: Double
    /// Seconds per order at the payment gateway (S).
    public var serviceTime: Double
    /// Length of the sale in seconds (T).
    public var duration: Double
    /// Workers (W).
    public var workers: Int

    public init(demand: Double, serviceTime: Double, duration: Double, workers: Int) {
        self.demand = demand
        self.serviceTime = serviceTime
        self.duration = duration
        self.workers = workers
    }

    /// Orders per second the workers finish: W / S.
    public var capacity: Double { Double(workers) / serviceTime }
    /// Demand the workers cannot keep up with, per second.
    public var shortfall: Double { max(0, demand - capacity) }
    /// Utilisation ρ = λ / c (above 1: the queue grows).
    public var utilization: Double { capacity > 0 ? demand / capacity : .infinity }
    /// Orders arriving during the sale.
    public var arrivals: Double { demand * duration }
    /// Orders queued when the sale ends (its peak).
    public var peakQueueDepth: Double { shortfall * duration }
    /// Seconds after the sale until the queue is empty.
    public var drainTime: Double { peakQueueDepth == 0 ? 0 : (capacity > 0 ? peakQueueDepth / capacity : .infinity) }
    /// Seconds from the sale's start until the last order is processed.
    public var timeToEmpty: Double { duration + drainTime }
    /// Workers busy on average at this demand (Little's law: λ·S).
    public var littlesLawWorkers: Double { demand * serviceTime }
    /// The fewest workers with no backlog at all: ⌈λ·S⌉ (ρ = 1 when λ·S is whole).
    public var minimumWorkers: Int { Int((demand * serviceTime - 1e-9).rounded(.up)) }
    /// The fewest workers with ρ < 1, which random arrivals need for a queue that stays bounded.
    public var minimumWorkersStable: Int { Int((demand * serviceTime).rounded(.down)) + 1 }

    /// The fewest workers that empty the queue within `target` seconds of the sale's end:
    /// W ≥ λ·S·T / (T + target).
    public func workersToDrain(within target: Double) -> Int {
        guard duration + target > 0 else { return minimumWorkers }
        return max(1, Int((demand * serviceTime * duration / (duration + target) - 1e-9).rounded(.up)))
    }
}
