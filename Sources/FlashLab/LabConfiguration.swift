import Foundation

/// The study of the seeds, as parameters in the seeds' own time; `timeScale` shrinks every
/// duration at once (0.01: the 3 s payment takes 30 ms, the 60 s sale 0.6 s).
public struct LabConfiguration: Sendable {
    /// Multiplies every duration of the study.
    public var timeScale = 0.01
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
    /// Phases 3–5: the flash sale on the async endpoint (seed: 20 users for 60 s).
    public var asyncUsers = 20
    public var saleDuration = 60.0
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
}
