import ArgumentParser
import FlashCore
import FlashLab

/// `flashsale plan`: the capacity planner (closed form, or simulated with `--simulate`).
struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Capacity planner: capacity, peak queue, drain time and the workers a sale needs.",
        discussion: "Example (the seeds' phase 2): flashsale plan --demand 60/s --service-time 3s --duration 60s --workers 1")

    @Option(help: "Orders per second during the sale: 60/s, 3600/m, 1M/s.") var demand = "60/s"
    @Option(help: "Time per order at the payment gateway.") var serviceTime = "3s"
    @Option(help: "Length of the sale.") var duration = "60s"
    @Option(help: "Workers.") var workers = 1
    @Option(help: "Also size the pool to empty the queue within this time after the sale (e.g. 10m).") var drainWithin: String?
    @Flag(help: "Also run a stochastic simulation (random arrivals and service times).") var simulate = false
    @Option(help: "Simulation runs (for the spread).") var runs = 20
    @Option(help: "Simulated service times: fixed or exponential.") var service = "fixed"
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        guard let rate = RateParsing.perSecond(demand) else { throw ValidationError("--demand must be like 60/s, 3600/m or 1M/s") }
        guard let s = Duration(parsing: serviceTime), s > .zero else { throw ValidationError("--service-time must be a positive duration") }
        guard let t = Duration(parsing: duration) else { throw ValidationError("--duration must be a duration") }
        guard workers >= 1 else { throw ValidationError("--workers must be at least 1") }
        var target: Double?
        if let drainWithin {
            guard let d = Duration(parsing: drainWithin) else { throw ValidationError("--drain-within must be a duration") }
            target = d.asSeconds
        }
        let plan = CapacityPlan(demand: rate, serviceTime: s.asSeconds, duration: t.asSeconds, workers: workers)
        if json {
            print(plan.json(drainTarget: target))
        } else {
            print(plan.report(drainTarget: target))
        }
        guard simulate else { return }
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
}
