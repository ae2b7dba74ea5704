import ArgumentParser
import FlashCore
import FlashLab
import Foundation

/// `flashsale lab`: the seeds' whole study in minutes, with a report and charts.
struct LabCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Reproduce the seeds' study (sync vs async, queue buildup, worker scaling) and write a report.")

    @Option(help: "Report folder.") var out = "./lab-report"
    @Option(help: "Multiplies every duration of the study (0.05: 3 s payments take 150 ms); 'auto' starts at 0.05. The lab first checks that this machine sustains the seeds' demand at it, and doubles it until it does (the report says so).") var timeScale = "auto"
    @Flag(help: "Run at --time-scale even if this machine cannot sustain the seeds' demand at it.") var exactTimeScale = false
    @Option(help: "The flash sale's demand in seed time (phases 3-6, open loop).") var rate = "60/s"
    @Option(help: "Worker counts for phase 5, comma-separated.") var workers = "1,5,20,100,200"
    @Option(help: "Payment time, in seed time.") var paymentTime = "3s"
    @Option(help: "Sale length (phases 3-5), in seed time.") var saleDuration = "60s"
    @Option(help: "Users during phase 1's flash load (the sync endpoint, closed loop).") var users = 20
    @Option(help: "Users during phase 1's normal load.") var normalUsers = 5
    @Option(help: "Phase 1 normal-load length, seed time.") var normalDuration = "30s"
    @Option(help: "Think time between a user's orders, seed time.") var wait = "100ms..500ms"
    @Flag(help: "Skip the experimental search for the minimum worker count.") var noSearch = false

    func run() async throws {
        var config = LabConfiguration()
        if timeScale != "auto" {
            guard let scale = Double(timeScale), scale > 0, scale <= 1 else { throw ValidationError("--time-scale must be auto or a number in (0, 1], not '\(timeScale)'") }
            config.timeScale = scale
        }
        config.adaptTimeScale = !exactTimeScale
        guard let demand = RateParsing.perSecond(rate), demand > 0 else { throw ValidationError("--rate must be like 60/s or 3600/m, not '\(rate)'") }
        config.saleRate = demand
        config.outputDirectory = out
        let counts = workers.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !counts.isEmpty, counts.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--workers must list counts ≥ 1") }
        config.workerCounts = counts
        guard let payment = Duration(parsing: paymentTime), payment > .zero else { throw ValidationError("--payment-time must be a duration, \(Duration.acceptedForms)") }
        config.paymentTime = payment.asSeconds
        guard let sale = Duration(parsing: saleDuration), sale > .zero else { throw ValidationError("--sale-duration must be a duration, \(Duration.acceptedForms)") }
        config.saleDuration = sale.asSeconds
        config.syncFlashDuration = sale.asSeconds
        guard let normal = Duration(parsing: normalDuration), normal > .zero else { throw ValidationError("--normal-duration must be a duration, \(Duration.acceptedForms)") }
        config.syncNormalDuration = normal.asSeconds
        guard users >= 1, normalUsers >= 1 else { throw ValidationError("user counts must be at least 1") }
        config.syncFlashUsers = users
        config.syncNormalUsers = normalUsers
        config.wait = try Settings.durationRange(wait, option: "--wait")
        config.searchMinimum = !noSearch
        let tty = isatty(2) != 0
        let results = try await Lab(configuration: config).run { line in
            FileHandle.standardError.write(Data((tty ? "\r\u{1B}[K" + line : line + "\n").utf8))
        }
        if tty { FileHandle.standardError.write(Data("\n".utf8)) }
        let files = try LabReport(results: results).write(to: out)
        let scale = results.configuration.timeScale
        print("lab finished in \(Format.seconds(results.wallSeconds)) at time scale \(scale) (seed-equivalent \(Format.seconds(results.wallSeconds / scale)))")
        print("report: \((out as NSString).appendingPathComponent("REPORT.md"))")
        for file in files.dropFirst() { print("        \(file)") }
    }
}
