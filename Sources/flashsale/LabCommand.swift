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
    @Option(help: "Multiplies every duration of the study (0.01: 3 s payments take 30 ms).") var timeScale = 0.01
    @Option(help: "Worker counts for phase 5, comma-separated.") var workers = "1,5,20,100,200"
    @Option(help: "Payment time, in seed time.") var paymentTime = "3s"
    @Option(help: "Sale length (phases 3-5), in seed time.") var saleDuration = "60s"
    @Option(help: "Users during the flash sale (phases 1 and 3).") var users = 20
    @Option(help: "Users during phase 1's normal load.") var normalUsers = 5
    @Option(help: "Phase 1 normal-load length, seed time.") var normalDuration = "30s"
    @Option(help: "Think time between a user's orders, seed time.") var wait = "100ms..500ms"
    @Flag(help: "Skip the experimental search for the minimum worker count.") var noSearch = false

    func run() async throws {
        var config = LabConfiguration()
        guard timeScale > 0, timeScale <= 1 else { throw ValidationError("--time-scale must be in (0, 1]") }
        config.timeScale = timeScale
        config.outputDirectory = out
        let counts = workers.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !counts.isEmpty, counts.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--workers must list counts ≥ 1") }
        config.workerCounts = counts
        guard let payment = Duration(parsing: paymentTime), payment > .zero else { throw ValidationError("--payment-time must be a duration") }
        config.paymentTime = payment.asSeconds
        guard let sale = Duration(parsing: saleDuration), sale > .zero else { throw ValidationError("--sale-duration must be a duration") }
        config.saleDuration = sale.asSeconds
        config.syncFlashDuration = sale.asSeconds
        guard let normal = Duration(parsing: normalDuration), normal > .zero else { throw ValidationError("--normal-duration must be a duration") }
        config.syncNormalDuration = normal.asSeconds
        guard users >= 1, normalUsers >= 1 else { throw ValidationError("user counts must be at least 1") }
        config.asyncUsers = users
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
        print("lab finished in \(Format.seconds(results.wallSeconds)) (seed-equivalent \(Format.seconds(results.wallSeconds / timeScale)))")
        print("report: \((out as NSString).appendingPathComponent("REPORT.md"))")
        for file in files.dropFirst() { print("        \(file)") }
    }
}
