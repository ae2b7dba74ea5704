import FlashCore
import FlashLab
import Testing

@Suite("Capacity planner")
struct CapacityPlanTests {
    let seeds = CapacityPlan(demand: 60, serviceTime: 3, duration: 60, workers: 1)

    @Test func reproducesTheSeedsArithmetic() {
        #expect(abs(seeds.capacity - 1.0 / 3.0) < 1e-9)          // 0.33 orders/s
        #expect(abs(seeds.shortfall - 59.6667) < 1e-3)            // 59.67 orders/s cannot be served
        #expect(seeds.arrivals == 3600)
        #expect(abs(seeds.peakQueueDepth - 3580) < 1e-6)          // 3,580 queued after 60 s
        #expect(abs(seeds.drainTime - 10_740) < 1e-6)             // ~3 hours to drain
        #expect(seeds.minimumWorkers == 180)                      // Little's law: 60 × 3
        #expect(seeds.minimumWorkersStable == 181)
        #expect(seeds.littlesLawWorkers == 180)
    }

    @Test func matchesTheSeedsWorkerScalingTable() {
        // 20 workers: 6.67 orders/s; 100 workers: 33.3 orders/s; neither keeps up with 60/s.
        let twenty = CapacityPlan(demand: 60, serviceTime: 3, duration: 60, workers: 20)
        #expect(abs(twenty.capacity - 6.6667) < 1e-3)
        #expect(abs(twenty.peakQueueDepth - 3200) < 1e-6)
        let hundred = CapacityPlan(demand: 60, serviceTime: 3, duration: 60, workers: 100)
        #expect(abs(hundred.capacity - 33.333) < 1e-2)
        #expect(abs(hundred.drainTime - 48) < 1e-6)
        let enough = CapacityPlan(demand: 60, serviceTime: 3, duration: 60, workers: 180)
        #expect(enough.peakQueueDepth == 0)
        #expect(enough.drainTime == 0)
    }

    @Test func sizesThePoolForADrainTarget() {
        let workers = seeds.workersToDrain(within: 600)
        let plan = CapacityPlan(demand: 60, serviceTime: 3, duration: 60, workers: workers)
        #expect(plan.drainTime <= 600)
        let fewer = CapacityPlan(demand: 60, serviceTime: 3, duration: 60, workers: workers - 1)
        #expect(fewer.drainTime > 600)
    }

    @Test func handlesInternetSizedInputs() {
        let plan = CapacityPlan(demand: 1_000_000, serviceTime: 3, duration: 60, workers: 100_000)
        #expect(plan.minimumWorkers == 3_000_000)
        #expect(abs(plan.peakQueueDepth - 58_000_000) < 1)
        #expect(abs(plan.drainTime - 1740) < 1e-6)
    }

    @Test func parsesRates() {
        #expect(RateParsing.perSecond("60/s") == 60)
        #expect(RateParsing.perSecond("600") == 600)
        #expect(RateParsing.perSecond("3600/m") == 60)
        #expect(RateParsing.perSecond("1M/s") == 1_000_000)
        #expect(RateParsing.perSecond("1.5k") == 1500)
        #expect(RateParsing.perSecond("x/s") == nil)
        #expect(RateParsing.perSecond("-1") == nil)
    }
}

@Suite("Queue simulation")
struct QueueSimulationTests {
    @Test(arguments: [1, 5, 20, 100])
    func agreesWithTheClosedFormWhenOverloaded(workers: Int) {
        let plan = CapacityPlan(demand: 60, serviceTime: 3, duration: 60, workers: workers)
        var generator = SplitMix64(seed: UInt64(workers))
        let summary = QueueSimulation(plan: plan, service: .fixed).simulate(runs: 5, using: &generator)
        let peak = summary.mean(\.peakQueueDepth)
        let drain = summary.mean(\.drainTime)
        #expect(abs(peak - plan.peakQueueDepth) / plan.peakQueueDepth < 0.05, "peak \(peak) vs \(plan.peakQueueDepth)")
        #expect(abs(drain - plan.drainTime) / plan.drainTime < 0.05, "drain \(drain) vs \(plan.drainTime)")
        #expect(abs(summary.mean(\.arrivals) - 3600) / 3600 < 0.05)
    }

    @Test func keepsUpWhenThereAreEnoughWorkers() {
        let plan = CapacityPlan(demand: 60, serviceTime: 3, duration: 60, workers: 240)
        var generator = SplitMix64(seed: 7)
        let summary = QueueSimulation(plan: plan, service: .exponential).simulate(runs: 3, using: &generator)
        // Random arrivals make small queues, not a backlog of thousands.
        #expect(summary.mean(\.peakQueueDepth) < 100)
        #expect(summary.mean(\.processed) == summary.mean(\.arrivals))
    }

    @Test func scalesToAMillionOrdersPerSecond() {
        let plan = CapacityPlan(demand: 1_000_000, serviceTime: 0.03, duration: 10_800, workers: 1000)
        var generator = SplitMix64(seed: 1)
        let summary = QueueSimulation(plan: plan, service: .fixed).simulate(runs: 1, using: &generator)
        #expect(abs(summary.mean(\.peakQueueDepth) - plan.peakQueueDepth) / plan.peakQueueDepth < 0.01)
        #expect(abs(summary.mean(\.drainTime) - plan.drainTime) / plan.drainTime < 0.01)
    }
}
