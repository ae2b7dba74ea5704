import Foundation

/// One sale on the async endpoint with W workers, measured, next to the theory for what it received.
public struct SaleRun: Sendable {
    public var workers: Int
    /// Orders accepted during the sale.
    public var arrivals: Int
    /// Wall seconds the sale lasted.
    public var saleSeconds: Double
    /// Wall seconds from the sale's start until the queue was empty and every order finished.
    public var emptySeconds: Double
    /// Highest queue depth sampled (visible + in flight + delayed).
    public var peakDepth: Int
    public var completed: Int
    public var failed: Int
    /// Samples: (wall seconds since the sale's start, queue depth).
    public var depth: [(Double, Int)]
    /// The load generator's view of the sale.
    public var load: LoadResult
    /// Payment time, wall seconds.
    public var paymentSeconds: Double

    /// Wall seconds after the sale's end until empty.
    public var drainSeconds: Double { max(0, emptySeconds - saleSeconds) }
    /// Orders per wall second the pool finished, over the time it had work.
    public var processingRate: Double { emptySeconds > 0 ? Double(completed + failed) / emptySeconds : 0 }
    /// Orders per wall second arriving.
    public var demand: Double { Double(arrivals) / max(saleSeconds, 1e-9) }

    /// The closed form for exactly what this run received.
    public var theory: CapacityPlan {
        CapacityPlan(demand: demand, serviceTime: paymentSeconds, duration: saleSeconds, workers: workers)
    }
    /// Wall seconds the theory expects from the sale's end until empty: the backlog's drain, and
    /// at least one payment (the last order received still has to be charged).
    public var theoreticalDrain: Double { max(theory.drainTime, paymentSeconds) }
    /// Orders per wall second the theory expects over the same span: c when the queue builds,
    /// else the demand.
    public var theoreticalRate: Double { Double(arrivals) / max(saleSeconds + theoreticalDrain, 1e-9) }
}

/// One phase-1 run on the sync endpoint.
public struct SyncRun: Sendable {
    public var name: String
    public var users: Int
    public var load: LoadResult
    public var paymentSeconds: Double
    public var lanes: Int
}

/// Everything the lab measured.
public struct LabResults: Sendable {
    public var configuration: LabConfiguration
    public var syncRuns: [SyncRun] = []
    public var saleRuns: [SaleRun] = []
    /// (workers, kept up?) trials of the minimum-worker search.
    public var minimumTrials: [(workers: Int, keptUp: Bool, drainSeconds: Double, peak: Int, demand: Double)] = []
    public var minimumFound: Int?
    public var wallSeconds: Double = 0
    public var startedAt = Date()

    public init(configuration: LabConfiguration) {
        self.configuration = configuration
    }
}
