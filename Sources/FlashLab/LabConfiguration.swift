import Foundation

/// The study of the seeds, as parameters in the seeds' own time; `timeScale` shrinks every
/// duration at once (0.01: the 3 s payment takes 30 ms, the 60 s sale 0.6 s).
public struct LabConfiguration: Sendable {
    /// Multiplies every duration of the study; the first one tried (see ``adaptTimeScale``).
    public var timeScale = 0.05
    /// Check first that this machine sustains the sale's rate at ``timeScale`` (the demand
    /// delivered, and a pool of ``checkPool`` keeping up), and double the scale until it does.
    /// The report says which scale ran and why.
    public var adaptTimeScale = true
    /// Seconds per payment (seed time).
    public var paymentTime = 3.0
    /// Phase 1, normal load: users and seconds (seed: 5 users for 30 s).
    public var syncNormalUsers = 5
    public var syncNormalDuration = 30.0
    /// Phase 1, flash load (seed: 20 users for 60 s).
    public var syncFlashUsers = 20
    public var syncFlashDuration = 60.0
    /// How long a sync customer waits at most (seed time; the seeds' load balancer gave up at 60 s).
    public var syncTimeout = 60.0
    /// Phases 3–6: the flash sale on the async endpoint, open loop at the seeds' demand (60
    /// orders/s for 60 s, seed time).
    public var saleRate = 60.0
    public var saleDuration = 60.0
    /// A fixed pool keeps up when the sale's last order is charged within this many payments of
    /// the sale's end (its queue stayed bounded: a backlog of at most half the pool at the end).
    public var keepUpPayments = 1.5
    /// Phase 5 watches a pool that falls behind for this long after the sale (seed time), then
    /// projects its drain from its measured rate.
    public var observeAfterSale = 60.0
    /// Phase 6, `--workers auto`: the target wait and the scale-down window (seed time).
    public var autoTargetWait = 5.0
    public var autoScaleDownWindow = 10.0
    /// Users spawned per second (seed time).
    public var spawnRate = 10.0
    /// Think time between a user's requests (seed: 100–500 ms).
    public var wait: ClosedRange<Double> = 0.1...0.5
    /// Phase 5: worker counts.
    public var workerCounts = [1, 5, 20, 100, 200]
    /// Search for the minimum worker count that keeps up, by experiment.
    public var searchMinimum = true
    /// Where the report goes.
    public var outputDirectory = "./lab-report"

    public init() {}

    func scaled(_ seconds: Double) -> Double { seconds * timeScale }

    /// The pool of the time-scale check: 5% above Little's law. A machine whose own work per
    /// order (receiving, the database writes) takes more than 5% of a time-scaled payment
    /// cannot show the seeds' minimum within 10%, so it runs the study slower.
    public var checkPool: Int { Int((Double(littlesLawWorkers) * 1.05).rounded(.up)) }

    /// Little's law for the seeds' sale: λ·S workers (180 for 60 orders/s of 3 s payments).
    public var littlesLawWorkers: Int { Int((saleRate * paymentTime - 1e-9).rounded(.up)) }
}
