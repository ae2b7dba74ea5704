import FlashCore
import Foundation

/// Writes the lab's report folder: REPORT.md, the SVG charts and the measurements as CSV.
public struct LabReport: Sendable {
    public let results: LabResults

    public init(results: LabResults) {
        self.results = results
    }

    var c: LabConfiguration { results.configuration }
    /// Wall seconds → seed seconds.
    func seed(_ wall: Double) -> Double { wall / c.timeScale }
    /// Wall rate → seed rate.
    func seedRate(_ wall: Double) -> Double { wall * c.timeScale }

    /// The files written, relative to the folder.
    public static let files = ["REPORT.md", "queue-depth.svg", "response-times.svg", "processing-rate.svg",
                               "elastic-workers.svg", "elastic-age.svg",
                               "worker-scaling.csv", "queue-depth.csv", "elastic-workers.csv", "sync_stats.csv", "async_stats.csv"]

    /// Writes every file into `directory` (created if needed); returns their paths.
    @discardableResult
    public func write(to directory: String) throws -> [String] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let contents: [(String, String)] = [
            ("REPORT.md", markdown), ("queue-depth.svg", queueDepthChart), ("response-times.svg", responseChart),
            ("processing-rate.svg", rateChart), ("elastic-workers.svg", elasticCharts.workers), ("elastic-age.svg", elasticCharts.age),
            ("worker-scaling.csv", scalingCSV), ("queue-depth.csv", depthCSV), ("elastic-workers.csv", elasticCSV),
            ("sync_stats.csv", results.syncRuns.first?.load.statsCSV ?? LoadResult.statsHeader + "\n"),
            ("async_stats.csv", results.saleRuns.first?.load.statsCSV ?? LoadResult.statsHeader + "\n"),
        ]
        return try contents.map { name, text in
            let path = (directory as NSString).appendingPathComponent(name)
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
    }

    // MARK: Markdown

    func percent(_ measured: Double, _ theory: Double) -> String {
        guard theory > 0, measured.isFinite else { return "–" }
        return String(format: "%+.1f%%", (measured - theory) / theory * 100)
    }

    public var markdown: String {
        var md: [String] = []
        let payment = c.paymentTime
        md.append("# Flash sale lab report")
        md.append("")
        md.append("The CS6650 study of synchronous vs asynchronous order processing, reproduced by `flashsale lab` on one machine (\(ProcessInfo.processInfo.activeProcessorCount) cores), \(ISO8601DateFormatter().string(from: results.startedAt)).")
        md.append("")
        md.append(timeScaleNote)
        md.append("")
        md.append("Every duration of the study runs at **time scale \(c.timeScale)**: the \(Format.seconds(payment)) payment takes \(Format.seconds(c.scaled(payment))), the \(Format.seconds(c.saleDuration)) sale \(Format.seconds(c.scaled(c.saleDuration))). Tables give **seed-equivalent** figures (wall time ÷ \(c.timeScale)) unless a column says *wall*. The whole lab took **\(Format.seconds(results.wallSeconds)) of wall time**, standing for **\(Format.seconds(seed(results.wallSeconds))) of the seeds' time**.")
        md.append("")
        // Phase 1
        md.append("## Phase 1: synchronous endpoint")
        md.append("")
        md.append("`POST /orders/sync` holds each customer until one checkout lane (\(results.syncRuns.first?.lanes ?? 1) lane, \(Format.seconds(payment)) per payment) has charged them. Users wait \(Format.seconds(c.wait.lowerBound))–\(Format.seconds(c.wait.upperBound)) between orders; customers give up after \(Format.seconds(c.syncTimeout)).")
        md.append("")
        md.append("| Test | Users | Requests | Failures | Avg response | Theory | Median | p95 | Throughput | Theory |")
        md.append("|---|---|---|---|---|---|---|---|---|---|")
        for run in results.syncRuns {
            let a = run.load.aggregated
            // Interactive response-time law for a saturated closed system: R = N·S/lanes − Z.
            let think = (c.wait.lowerBound + c.wait.upperBound) / 2
            let responseTheory = min(c.syncTimeout, max(payment, Double(run.users) * payment / Double(run.lanes) - think))
            md.append("| \(run.name) | \(run.users) | \(a.requests) | \(a.failures) | \(Format.seconds(seed(a.averageMillis / 1000))) | \(Format.seconds(responseTheory)) | \(Format.seconds(seed(a.medianMillis / 1000))) | \(Format.seconds(seed(a.percentileMillis(95) / 1000))) | \(Format.number(seedRate(Double(a.requests - a.failures) / run.load.elapsed))) orders/s | ≤ \(Format.number(Double(run.lanes) / payment)) orders/s |")
        }
        md.append("")
        md.append("Response-time theory: the interactive response-time law for a saturated closed loop, R = N·S / lanes − Z (N users, S per payment, Z the mean think time), capped by the customers' timeout. The seeds saw 7.9 s and 29.5 s, lower than the law, because their users were still ramping up during much of their short runs.")
        md.append("")
        if let flash = results.syncRuns.last {
            let codes = flash.load.statusCodes.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
            md.append("Status codes in the flash test: \(codes.isEmpty ? "none" : codes). Refused customers (503) were told at once that the line was too long, instead of waiting until they timed out; nothing was charged for them.")
            md.append("")
        }
        // Phase 2
        let reference = results.saleRuns.first
        let demand = reference.map { seedRate($0.demand) } ?? c.saleRate
        let plan = CapacityPlan(demand: demand, serviceTime: payment, duration: c.saleDuration, workers: 1)
        md.append("## Phase 2: the bottleneck")
        md.append("")
        md.append("| | Figure |")
        md.append("|---|---|")
        md.append("| Payment capacity, 1 worker | \(Format.number(plan.capacity)) orders/s (1 / \(Format.seconds(payment))) |")
        md.append("| Flash-sale demand (measured in phase 3) | \(Format.number(demand)) orders/s |")
        md.append("| Shortfall | \(Format.number(plan.shortfall)) orders/s |")
        md.append("| Queued at the end of a \(Format.seconds(c.saleDuration)) sale | \(Format.number(plan.peakQueueDepth)) orders |")
        md.append("| Time to drain with 1 worker | \(Format.seconds(plan.drainTime)) |")
        md.append("| Workers for no backlog (Little's law λ·S) | \(Format.number(plan.littlesLawWorkers)) → \(plan.minimumWorkers) (\(plan.minimumWorkersStable) for ρ < 1) |")
        md.append("")
        let delivered = results.saleRuns.map { seedRate($0.demand) } + (results.elastic.map { [seedRate($0.demand)] } ?? [])
        md.append("The flash sale is sent open loop at the seeds' demand, \(Format.number(c.saleRate)) orders/s (\(Format.number(c.saleRate / c.timeScale)) requests per wall second at this time scale), each order at its own instant whatever the server's answer times, so the HTTP round trip, which does not shrink with the time scale, cannot lower the demand as closed-loop users' would. **Demand delivered: \(Format.number(demand)) orders/s** in phase 3 (\(percent(demand, c.saleRate)) of \(Format.number(c.saleRate))), \(Format.number(delivered.min() ?? 0))–\(Format.number(delivered.max() ?? 0)) orders/s across every sale of phases 3–6. Every theory below uses the demand each run actually received.")
        md.append("")
        md.append("The seeds' own arithmetic (60 orders/s, 3 s): `flashsale plan --demand 60/s --service-time 3s --duration 60s --workers 1` gives 0.33 orders/s of capacity, 3,580 queued and 2h 59m to drain, and 180 workers.")
        md.append("")
        // Phase 3
        md.append("## Phase 3: asynchronous endpoint")
        md.append("")
        md.append("`POST /orders/async` stores the order and its message in one durable transaction and answers 202. Response times are wall-clock: they are network and disk latency, which do not scale with the payment time.")
        md.append("")
        md.append("| Test | Rate sent | Requests | Failures | Avg (wall) | Median (wall) | p95 (wall) | p99 (wall) | Accepted |")
        md.append("|---|---|---|---|---|---|---|---|---|")
        if let run = reference {
            let a = run.load.aggregated
            md.append("| Flash sale | \(Format.number(c.saleRate)) orders/s | \(a.requests) | \(a.failures) | \(String(format: "%.1f ms", a.averageMillis)) | \(String(format: "%.1f ms", a.medianMillis)) | \(String(format: "%.1f ms", a.percentileMillis(95))) | \(String(format: "%.1f ms", a.percentileMillis(99))) | \(Format.number(seedRate(run.demand))) orders/s |")
        }
        if let sync = results.syncRuns.last, let run = reference {
            let ratio = (sync.load.aggregated.averageMillis / c.timeScale) / max(run.load.aggregated.averageMillis, 1e-9)
            md.append("")
            md.append("In the synchronous flash test a customer waited \(Format.seconds(sync.load.aggregated.averageMillis / 1000 / c.timeScale)) on average (seed-equivalent); here the 202 came back in \(String(format: "%.1f ms", run.load.aggregated.averageMillis)) (wall, loopback), \(Format.number(ratio))× sooner. The seeds measured 33–47 ms across AWS, network included.")
        }
        md.append("")
        // Phase 4
        md.append("## Phase 4: queue buildup and drain")
        md.append("")
        md.append("| Workers | Orders | Peak depth | Theory | Time to drain | Theory | Difference |")
        md.append("|---|---|---|---|---|---|---|")
        for run in results.saleRuns {
            let theory = run.theory
            md.append("| \(run.workers) | \(run.arrivals) | \(run.peakDepth) | \(Format.number(theory.peakQueueDepth)) | \(run.cutOff ? "~" : "")\(Format.seconds(seed(run.drainSeconds))) | \(Format.seconds(seed(run.theoreticalDrain))) | \(theory.drainTime > c.scaled(payment) * 2 ? percent(run.drainSeconds, run.theoreticalDrain) : "no backlog") |")
        }
        md.append("")
        md.append("Theory uses the orders each run actually received: peak = arrivals − W/S × T, drain = max(peak ÷ (W/S), S), the S being the last order's own payment. The measured peak counts every message not yet deleted (waiting and in flight), sampled once per seed second. A pool still behind \(Format.seconds(c.observeAfterSale)) after the sale is not watched to the end: its time to drain (~) is projected from what was left then, at W/S.")
        md.append("")
        // Phase 5
        md.append("## Phase 5: worker scaling")
        md.append("")
        md.append("| Workers | Processing rate | Theory | Difference | Peak depth | Time to drain | Keeps up? |")
        md.append("|---|---|---|---|---|---|---|")
        for run in results.saleRuns {
            let keeps = !run.cutOff && run.drainSeconds <= c.scaled(payment * c.keepUpPayments)
            md.append("| \(run.workers) | \(Format.number(seedRate(run.processingRate))) orders/s | \(Format.number(seedRate(run.theoreticalRate))) orders/s | \(percent(run.processingRate, run.theoreticalRate)) | \(run.peakDepth) | \(Format.seconds(seed(run.drainSeconds))) | \(keeps ? "✅ yes" : "❌ no") |")
        }
        md.append("")
        let within = results.saleRuns.filter { run in
            abs(run.processingRate - run.theoreticalRate) / max(run.theoreticalRate, 1e-9) <= 0.05
                && (run.theory.drainTime <= c.scaled(payment) * 2 || abs(run.drainSeconds - run.theoreticalDrain) / run.theoreticalDrain <= 0.05)
        }
        if within.count == results.saleRuns.count {
            md.append("Every processing rate and drain time is within 5% of the theory.")
        } else {
            let off = results.saleRuns.filter { run in !within.contains { $0.workers == run.workers } }.map { String($0.workers) }
            md.append("Within 5% of the theory: \(within.count) of \(results.saleRuns.count) worker counts. Off by more: W = \(off.joined(separator: ", ")). Why, as measured: a worker's time per order is the payment plus the pool's own work (receiving, and the database writes that start and finish the order), and during the sale the load generator, the HTTP server and the disk commits share the machine's \(ProcessInfo.processInfo.activeProcessorCount) cores with the workers, so a pool finishes somewhat fewer orders than W/S, leaves a larger backlog than the theory's and needs longer to drain it. The share is larger at a faster time scale (shorter payments, more orders per wall second); `flashsale bench workers`, which runs the pool alone, measures ≥ 98% of W/S.")
        }
        md.append("")
        md.append("### Minimum workers for the seeds' demand")
        md.append("")
        let seeds = c.littlesLawWorkers
        md.append("| | Workers |")
        md.append("|---|---|")
        md.append("| Little's law for the seeds (\(Format.number(c.saleRate)) orders/s × \(Format.seconds(payment))) | \(seeds) |")
        md.append("| Planner (Little's law, measured demand \(Format.number(demand)) orders/s) | \(plan.minimumWorkers) |")
        md.append("| Experiment (smallest W whose queue stays bounded: the last order charged within \(Format.number(c.keepUpPayments)) payments of the sale's end) | \(results.minimumFound.map { "**\($0)** (\(percent(Double($0), Double(seeds))) of \(seeds))" } ?? (results.minimumTrials.isEmpty ? "not searched" : "none of the pools tried kept up")) |")
        if !results.minimumTrials.isEmpty {
            md.append("")
            md.append("| W tried | Demand it received | λ·S for that demand | Result |")
            md.append("|---|---|---|---|")
            for trial in results.minimumTrials {
                md.append("| \(trial.workers) | \(Format.number(seedRate(trial.demand))) orders/s | \(Format.number(seedRate(trial.demand) * payment)) | \(trial.keptUp ? (trial.tries > 1 ? "kept up (second try)" : "kept up") : "fell behind twice (drain \(Format.seconds(seed(trial.drainSeconds))))") |")
            }
            md.append("")
            md.append("A pool that falls behind is tried once more, and kept up if either try did: a pause of the machine only ever makes a pool look slower. Each trial is judged against the demand it received (open loop, so close to the seeds' in every row); compare the W found with λ·S in its row. A pool just below λ·S builds a backlog of (λ − W/S)·T by the sale's end; the criterion accepts one of at most W/2, so the experiment can land up to about \(Format.number(100 * (1 - c.saleDuration / (c.saleDuration + c.keepUpPayments * payment - payment))))% below λ·S, and above it by the pool's own time per order beyond the payment (its database writes), which this machine's cores add.")
        }
        md.append("")
        md.append(elasticSection)
        md.append("## Charts")
        md.append("")
        md.append("![Queue depth over time](queue-depth.svg)")
        md.append("")
        md.append("![Response time, sync vs async](response-times.svg)")
        md.append("")
        md.append("![Processing rate vs workers](processing-rate.svg)")
        md.append("")
        md.append("![Elastic workers over time](elastic-workers.svg)")
        md.append("")
        md.append("![Oldest message's age, elastic pool](elastic-age.svg)")
        md.append("")
        md.append("## Reproduce")
        md.append("")
        md.append("```sh")
        md.append("swift run -c release flashsale lab --time-scale \(c.timeScale) --workers \(c.workerCounts.map(String.init).joined(separator: ",")) --out \(c.outputDirectory)")
        md.append("```")
        md.append("")
        md.append("Raw figures: `worker-scaling.csv`, `queue-depth.csv`, `elastic-workers.csv`, and Locust-format `sync_stats.csv` / `async_stats.csv`.")
        return md.joined(separator: "\n") + "\n"
    }

    /// Which time scale ran, and why.
    var timeScaleNote: String {
        let checks = results.calibrations
        guard let last = checks.last else { return "The time scale was given (`--time-scale \(c.timeScale)`) and not checked." }
        func line(_ check: (scale: Double, demand: Double, keptUp: Bool)) -> String {
            "\(check.scale): \(Format.number(check.demand)) orders per wall second delivered of \(Format.number(c.saleRate / check.scale)), a pool of \(c.checkPool) \(check.keptUp ? "kept up" : "fell behind")"
        }
        if checks.count == 1 {
            return "**Time scale \(last.scale)**, checked first: this machine sustains it (\(line(last)))."
        }
        let failed = checks.dropLast().map(line).joined(separator: "; ")
        let verdict = last.keptUp && last.demand >= 0.97 * c.saleRate / last.scale ? "which it sustains" : "the slowest tried, which it still does not fully sustain"
        return "**Time scale \(last.scale)**, not the \(checks[0].scale) asked for: this machine could not sustain the seeds' demand at the faster scales (\(failed)), so the lab ran slower, at \(last.scale), \(verdict) (\(line(last)))."
    }

    /// Phase 6: the elastic pool against the fixed minimum.
    var elasticSection: String {
        guard let run = results.elastic else { return "" }
        var md: [String] = []
        let peak = run.scaling.map(\.workers).max() ?? 0
        md.append("## Phase 6: elastic workers (`--workers auto`)")
        md.append("")
        md.append("The same sale against a pool that starts at 1 worker and sizes itself from the queue (Little's law on the measured arrival rate, service time and backlog; target wait \(Format.seconds(c.autoTargetWait)), scale-down window \(Format.seconds(c.autoScaleDownWindow)), at most 1,000).")
        md.append("")
        md.append("| | Elastic | Fixed minimum |")
        md.append("|---|---|---|")
        let fixed = results.minimumFound ?? c.littlesLawWorkers
        let fixedRun = SaleRun(workers: fixed, arrivals: run.arrivals, saleSeconds: run.saleSeconds,
                               emptyAt: run.saleSeconds + c.scaled(c.paymentTime), observedSeconds: 0, peakDepth: 0, completed: 0, failed: 0,
                               depth: [], load: run.load, paymentSeconds: run.paymentSeconds)
        md.append("| Demand delivered | \(Format.number(seedRate(run.demand))) orders/s | the same sale |")
        md.append("| Workers | 1 → \(peak) → \(run.scaling.last?.workers ?? 0) | \(fixed) throughout |")
        md.append("| Oldest message's age, at most | \(Format.seconds(seed(run.scaling.map(\.oldestAge).max() ?? 0))) | \(Format.seconds(c.paymentTime)) (no backlog) |")
        md.append("| Last order charged after the sale's end | \(run.cutOff ? "not within \(Format.seconds(c.observeAfterSale))" : Format.seconds(seed(run.drainSeconds))) | \(Format.seconds(c.paymentTime)) |")
        md.append("| Worker-seconds, sale start to last order charged | \(Format.number(seed(run.workerSeconds))) | \(Format.number(seed(fixedRun.workerSeconds))) |")
        md.append("")
        md.append("Worker-seconds are seed-equivalent. The elastic pool pays a ramp (the first orders wait while it grows, so the oldest message ages up to about the target wait) and holds its peak for the scale-down window after the sale; the fixed pool has to be sized for the sale in advance and runs at that size before and after it too, where the elastic one runs 1 worker.")
        md.append("")
        return md.joined(separator: "\n")
    }

    var elasticCharts: (workers: String, age: String) {
        let samples = results.elastic?.scaling ?? []
        let fixed = Double(results.minimumFound ?? c.littlesLawWorkers)
        let workers = SVGChart(title: "Elastic workers during the seeds' flash sale", xLabel: "seed-equivalent time (s)", yLabel: "workers").lines([
            .init(name: "--workers auto", points: thin(samples.map { (seed($0.time), Double($0.workers)) })),
            .init(name: "fixed minimum (\(Int(fixed)))", points: samples.isEmpty ? [] : [(0, fixed), (seed(samples.last!.time), fixed)], dashed: true),
        ])
        let age = SVGChart(title: "Oldest message's age, elastic pool", xLabel: "seed-equivalent time (s)", yLabel: "seconds (seed-equivalent)").lines([
            .init(name: "oldest age", points: thin(samples.map { (seed($0.time), seed($0.oldestAge)) })),
            .init(name: "target wait + payment", points: samples.isEmpty ? [] : [(0, c.autoTargetWait + c.paymentTime), (seed(samples.last!.time), c.autoTargetWait + c.paymentTime)], dashed: true),
        ])
        return (workers, age)
    }

    var elasticCSV: String {
        var lines = ["seed_seconds,wall_seconds,workers,oldest_age_seed_seconds"]
        for sample in results.elastic?.scaling ?? [] {
            lines.append("\(String(format: "%.3f", seed(sample.time))),\(String(format: "%.5f", sample.time)),\(sample.workers),\(String(format: "%.3f", seed(sample.oldestAge)))")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: Charts

    var queueDepthChart: String {
        let chart = SVGChart(title: "Queue depth during and after the flash sale", xLabel: "seed-equivalent time (s, log scale)", yLabel: "messages in the queue")
        let series = results.saleRuns.map { run in
            SVGChart.Series(name: "\(run.workers) worker\(run.workers == 1 ? "" : "s")",
                            points: thin(run.depth.map { (max(1, seed($0.0)), Double($0.1)) }))
        }
        return chart.lines(series, logX: true)
    }

    var responseChart: String {
        let chart = SVGChart(title: "Response time: sync vs async (wall clock, time scale \(c.timeScale))", xLabel: "test", yLabel: "milliseconds")
        var categories = results.syncRuns.map { "sync: \($0.name.lowercased())" }
        var runs = results.syncRuns.map(\.load)
        if let async = results.saleRuns.first {
            categories.append("async: flash sale")
            runs.append(async.load)
        }
        let series = [50.0, 95, 99].map { p in (name: "p\(Int(p))", values: runs.map { $0.aggregated.percentileMillis(p) }) }
        return chart.bars(categories: categories, series: series)
    }

    var rateChart: String {
        let chart = SVGChart(title: "Processing rate vs workers", xLabel: "workers (log scale)", yLabel: "orders/s (seed-equivalent)")
        let measured = SVGChart.Series(name: "measured", points: results.saleRuns.map { (Double($0.workers), seedRate($0.processingRate)) })
        let theory = SVGChart.Series(name: "theory", points: results.saleRuns.map { (Double($0.workers), seedRate($0.theoreticalRate)) }, dashed: true)
        let capacity = SVGChart.Series(name: "W / S (no demand cap)", points: results.saleRuns.map { (Double($0.workers), Double($0.workers) / c.paymentTime) }, dashed: true)
        return chart.lines([measured, theory, capacity], logX: true)
    }

    /// At most ~600 points a line: enough for the eye, small files.
    func thin(_ points: [(Double, Double)]) -> [(x: Double, y: Double)] {
        let step = max(1, points.count / 600)
        var out = stride(from: 0, to: points.count, by: step).map { (x: points[$0].0, y: points[$0].1) }
        if let last = points.last, out.last?.x != last.0 { out.append((last.0, last.1)) }
        return out
    }

    // MARK: CSV

    var scalingCSV: String {
        var lines = ["workers,orders,sale_seconds_wall,peak_depth,peak_depth_theory,drain_seconds_seed,drain_seconds_theory_seed,processing_rate_seed,processing_rate_theory_seed,completed,failed"]
        for run in results.saleRuns {
            lines.append("\(run.workers),\(run.arrivals),\(String(format: "%.4f", run.saleSeconds)),\(run.peakDepth),\(String(format: "%.1f", run.theory.peakQueueDepth)),\(String(format: "%.2f", seed(run.drainSeconds))),\(String(format: "%.2f", seed(run.theory.drainTime))),\(String(format: "%.4f", seedRate(run.processingRate))),\(String(format: "%.4f", seedRate(run.theoreticalRate))),\(run.completed),\(run.failed)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    var depthCSV: String {
        var lines = ["workers,seed_seconds,wall_seconds,depth"]
        for run in results.saleRuns {
            for (time, depth) in run.depth { lines.append("\(run.workers),\(String(format: "%.3f", seed(time))),\(String(format: "%.5f", time)),\(depth)") }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
