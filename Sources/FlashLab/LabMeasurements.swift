import Foundation

/// One sale on the async endpoint with W workers, measured, next to the theory for what it received.
public struct SaleRun: Sendable {
    public var workers: Int
    /// Orders accepted during the sale.
    public var arrivals: Int
    /// Wall seconds the sale lasted.
    public var saleSeconds: Double
    /// Wall seconds from the sale's start until the queue was empty and every order finished;
    /// nil when the run was cut off first (``observedSeconds``).
    public var emptyAt: Double?
    /// Wall seconds the run was watched for, from the sale's start.
    public var observedSeconds: Double
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
    /// An elastic pool's run (phase 6): (wall seconds, workers, oldest message's age in wall seconds).
    public var scaling: [(time: Double, workers: Int, oldestAge: Double)] = []

    /// The pool's size: W, or an elastic pool's last sampled size (at least 1).
    public var poolSize: Int { workers > 0 ? workers : max(1, scaling.last?.workers ?? 1) }

    /// Whether the run was cut off before its queue was empty.
    public var cutOff: Bool { emptyAt == nil }
    /// Wall seconds from the sale's start until empty: measured, or for a run cut off, projected
    /// from what was left at the cut at the pool's capacity W/S.
    public var emptySeconds: Double {
        if let emptyAt { return emptyAt }
        let left = Double(max(0, arrivals - completed - failed))
        return observedSeconds + left / max(Double(poolSize) / paymentSeconds, 1e-9)
    }
    /// Wall seconds after the sale's end until empty (projected for a run cut off).
    public var drainSeconds: Double { max(0, emptySeconds - saleSeconds) }
    /// Orders per wall second the pool finished, over the time it had work (or was watched).
    public var processingRate: Double {
        let span = emptyAt ?? observedSeconds
        return span > 0 ? Double(completed + failed) / span : 0
    }
    /// Worker-seconds (wall) from the sale's start until empty: the samples of an elastic
    /// pool, W × that time for a fixed one.
    public var workerSeconds: Double {
        guard !scaling.isEmpty else { return Double(workers) * emptySeconds }
        var total = 0.0
        for (a, b) in zip(scaling, scaling.dropFirst()) where a.time < emptySeconds {
            total += Double(a.workers) * (min(b.time, emptySeconds) - a.time)
        }
        return total
    }
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
    public var theoreticalRate: Double {
        // Cut off while behind: the pool ran at capacity the whole time it was watched.
        if cutOff { return min(Double(poolSize) / paymentSeconds, Double(arrivals) / max(observedSeconds, 1e-9)) }
        return Double(arrivals) / max(saleSeconds + theoreticalDrain, 1e-9)
    }
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
    /// The time scales checked before the study, in order: the scale, the demand delivered
    /// (orders per wall second), and whether the check's pool (``LabConfiguration/checkPool``) kept up (in either of two tries).
    public var calibrations: [(scale: Double, demand: Double, keptUp: Bool)] = []
    /// Phase 6: the seeds' sale against `--workers auto`.
    public var elastic: SaleRun?
    /// (workers, kept up?) trials of the minimum-worker search.
    public var minimumTrials: [(workers: Int, keptUp: Bool, drainSeconds: Double, peak: Int, demand: Double, tries: Int)] = []
    public var minimumFound: Int?
    public var wallSeconds: Double = 0
    public var startedAt = Date()

    public init(configuration: LabConfiguration) {
        self.configuration = configuration
    }
}
