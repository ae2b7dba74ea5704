import ArgumentParser
import FlashCore
import FlashLab
import FlashWorkers
import Foundation

/// `flashsale plan`: the capacity planner (closed form, or simulated with `--simulate`).
struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Capacity planner: capacity, peak queue, drain time and the workers a sale needs.",
        discussion: """
            Example (the seeds' phase 2): flashsale plan --demand 60/s --service-time 3s --duration 60s --workers 1
            The elastic pool (--workers auto) on the seeds' sale, simulated with the controller the workers run:
              flashsale plan --demand 60/s --service-time 3s --duration 60s --workers auto --simulate --scenario sale --chart scaling
            """)

    @Option(help: "Orders per second during the sale: 60/s, 3600/m, 1M/s.") var demand = "60/s"
    @Option(help: "Time per order at the payment gateway.") var serviceTime = "3s"
    @Option(help: "Length of the sale.") var duration = "60s"
    @Option(help: "Workers, or 'auto' for the elastic pool (with --simulate: its controller on --scenario).") var workers = "1"
    @Option(help: "Also size the pool to empty the queue within this time after the sale (e.g. 10m).") var drainWithin: String?
    @Flag(help: "Also run a stochastic simulation (random arrivals and service times).") var simulate = false
    @Option(help: "Simulation runs (for the spread).") var runs = 20
    @Option(help: "Simulated service times: fixed or exponential.") var service = "fixed"
    @Flag(help: "Print JSON.") var json = false
    @Option(help: "With --workers auto --simulate: sale (0, the demand for the duration, 0), step, spike, or a trace file (a load --csv ..._stats_history.csv, or arrival timestamps in seconds, one per line).") var scenario = "sale"
    @Option(help: "With --workers auto: fewest workers per process.") var minWorkers = 1
    @Option(help: "With --workers auto: most workers per process.") var maxWorkers = 1_000
    @Option(help: "With --workers auto: the longest an order should wait before its charge starts.") var targetWait = "5s"
    @Option(help: "With --workers auto: the scale-down window.") var scaleDownWindow = "30s"
    @Option(help: "With --workers auto: worker processes sharing the queue.") var processes = 1
    @Option(help: "With --workers auto: the gateway's concurrency limit (charges beyond it queue; add --gateway-refuses for 429s).") var gatewayLimit: Int?
    @Flag(help: "With --gateway-limit: the gateway refuses charges beyond its limit instead of queueing them.") var gatewayRefuses = false
    @Option(help: "With --workers auto --simulate: write PREFIX-workers.svg, PREFIX-age.svg and PREFIX.csv.") var chart: String?

    func run() throws {
        guard let rate = RateParsing.perSecond(demand) else { throw ValidationError("--demand must be like 60/s, 3600/m or 1M/s") }
        guard let s = Duration(parsing: serviceTime), s > .zero else { throw ValidationError("--service-time must be a positive duration, \(Duration.acceptedForms)") }
        guard let t = Duration(parsing: duration) else { throw ValidationError("--duration must be a duration, \(Duration.acceptedForms)") }
        let elastic = workers.lowercased() == "auto"
        guard elastic || (Int(workers) ?? 0) >= 1 else { throw ValidationError("--workers must be a whole number of at least 1, or auto, not '\(workers)'") }
        var target: Double?
        if let drainWithin {
            guard let d = Duration(parsing: drainWithin) else { throw ValidationError("--drain-within must be a duration, \(Duration.acceptedForms)") }
            target = d.asSeconds
        }
        // The elastic pool's closed form is Little's law's count.
        let count = Int(workers) ?? CapacityPlan(demand: rate, serviceTime: s.asSeconds, duration: t.asSeconds, workers: 1).minimumWorkers
        let plan = CapacityPlan(demand: rate, serviceTime: s.asSeconds, duration: t.asSeconds, workers: max(1, count))
        if json {
            print(plan.json(drainTarget: target))
        } else {
            print(plan.report(drainTarget: target))
        }
        guard simulate else { return }
        if elastic {
            try simulateElastic(demand: rate, serviceTime: s, duration: t, fixed: plan)
            return
        }
        guard let kind = QueueSimulation.Service(rawValue: service) else { throw ValidationError("--service must be fixed or exponential") }
        var generator = SystemRandomNumberGenerator()
        let summary = QueueSimulation(plan: plan, service: kind).simulate(runs: runs, using: &generator)
        func line(_ name: String, _ field: KeyPath<QueueSimulation.Run, Double>, _ theory: Double, seconds: Bool = false) -> String {
            let mean = summary.mean(field), sd = summary.standardDeviation(field)
            let show = seconds ? Format.seconds : Format.number
            return "  \(name.padding(toLength: 24, withPad: " ", startingAt: 0)) \(show(mean)) ± \(show(sd))   (theory \(show(theory)))"
        }
        print("simulation: \(runs) runs, Poisson arrivals, \(kind.rawValue) service times")
        print(line("peak queue depth", \.peakQueueDepth, plan.peakQueueDepth))
        print(line("drain time", \.drainTime, plan.drainTime, seconds: true))
        print(line("processing rate", \.processingRate, min(plan.capacity, plan.demand)))
    }

    /// Runs the elastic pool's controller on the scenario in simulated time.
    func simulateElastic(demand: Double, serviceTime: Duration, duration: Duration, fixed: CapacityPlan) throws {
        guard let wait = Duration(parsing: targetWait), wait >= .milliseconds(10) else { throw ValidationError("--target-wait must be a duration of 10ms or more, \(Duration.acceptedForms)") }
        guard let window = Duration(parsing: scaleDownWindow) else { throw ValidationError("--scale-down-window must be a duration, \(Duration.acceptedForms)") }
        guard minWorkers >= 1, maxWorkers >= minWorkers else { throw ValidationError("--min-workers must be at least 1 and at most --max-workers") }
        guard processes >= 1 else { throw ValidationError("--processes must be at least 1") }
        let scenario: ScalingScenario
        do {
            scenario = try ScalingScenario.named(self.scenario, demand: demand, duration: duration.asSeconds)
        } catch {
            throw ValidationError("--scenario: \(error)")
        }
        let config = WorkerScaler.Configuration(minWorkers: minWorkers, maxWorkers: maxWorkers, targetWait: wait,
                                                scaleDownWindow: window, expectedServiceTime: serviceTime)
        let limit: PoolSimulation.GatewayLimit? = gatewayLimit.map { gatewayRefuses ? .refuses($0) : .queues($0) }
        let simulation = PoolSimulation(scaler: config, serviceTime: serviceTime.asSeconds, gatewayLimit: limit, processes: processes)
        // Through the scale-down window after the arrivals, so the pool is seen coming back down.
        let result = simulation.run(scenario.arrivals, duration: scenario.duration,
                                    through: scenario.duration + window.asSeconds + 4 * serviceTime.asSeconds)
        let report = ScalingReport(scenario: scenario.name, result: result, serviceTime: serviceTime.asSeconds, targetWait: wait.asSeconds)
        print("")
        print("elastic workers (--workers auto, the controller `serve --workers auto` runs), scenario \(scenario.name), sampled every \(Format.seconds(config.interval.asSeconds)):")
        print(report.text())
        if self.scenario == "sale" {
            // Beside a fixed pool of Little's law's size for the same sale (it runs throughout).
            let fixedSeconds = Double(fixed.minimumWorkers) * (result.samples.last?.time ?? 0)
            print("a fixed pool of \(fixed.minimumWorkers) (Little's law) over the same time: \(Format.number(fixedSeconds)) worker-seconds")
        }
        if let chart {
            let charts = report.charts
            try charts.workers.write(toFile: chart + "-workers.svg", atomically: true, encoding: .utf8)
            try charts.age.write(toFile: chart + "-age.svg", atomically: true, encoding: .utf8)
            try report.csv.write(toFile: chart + ".csv", atomically: true, encoding: .utf8)
            print("charts: \(chart)-workers.svg, \(chart)-age.svg; samples: \(chart).csv")
        }
    }
}
