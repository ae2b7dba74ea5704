import ArgumentParser
import FlashCore
import FlashLab
import Foundation

/// `flashsale load`: Locust-style load against any server (this one, or the seeds' AWS endpoints).
struct LoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Load a server: closed-loop users like Locust, or an open-loop constant rate (--rate).",
        discussion: """
            Examples:
              flashsale load --host http://127.0.0.1:8080 --endpoint sync --users 20 --spawn-rate 10 --duration 60s
              flashsale load --host http://127.0.0.1:8080 --endpoint async --rate 600/s --duration 30s --csv run1
            """)

    @Option(help: "Base URL of the server.") var host = "http://127.0.0.1:8080"
    @Option(help: "sync, async, buy, or a path such as /orders/async or /health.") var endpoint = "async"
    @Option(help: "HTTP method for a path endpoint.") var method = "POST"
    @Option(help: "Closed loop: simulated users.") var users = 10
    @Option(help: "Users started per second.") var spawnRate = 10.0
    @Option(help: "Think time between a user's requests, e.g. 100ms..500ms.") var wait = "100ms..500ms"
    @Option(help: "How long to run.") var duration = "30s"
    @Option(help: "Stop after this many requests in all (as hey -n); the run ends once they are all answered, none cut off, or at --duration.") var requests: Int?
    @Option(help: "Open loop: requests per second (e.g. 600/s); latency counts from each intended send time.") var rate: String?
    @Option(help: "Open loop: most requests in flight.") var maxInFlight = 10_000
    @Option(help: "Per-request timeout; timeouts count as failures.") var timeout = "10s"
    @Option(help: "Write Locust-format PREFIX_stats.csv, PREFIX_stats_history.csv, PREFIX_failures.csv.") var csv: String?
    @Flag(help: "Print the result as JSON instead of the summary.") var json = false
    @Flag(help: "No progress line.") var quiet = false

    func resolve() throws -> LoadConfiguration {
        var config = LoadConfiguration(host: host)
        guard let endpoint = LoadConfiguration.Endpoint(parsing: endpoint, method: method) else {
            throw ValidationError("--endpoint must be sync, async, buy or a path starting with /")
        }
        config.endpoint = endpoint
        guard users >= 1 else { throw ValidationError("--users must be at least 1") }
        config.users = users
        guard spawnRate > 0 else { throw ValidationError("--spawn-rate must be positive") }
        config.spawnRate = spawnRate
        config.wait = try Settings.durationRange(wait, option: "--wait")
        guard let length = Duration(parsing: duration), length > .zero else { throw ValidationError("--duration must be a positive duration") }
        config.duration = length.asSeconds
        if let requests {
            guard requests >= 1 else { throw ValidationError("--requests must be at least 1") }
            config.requestLimit = requests
        }
        if let rate {
            guard let perSecond = RateParsing.perSecond(rate), perSecond > 0 else { throw ValidationError("--rate must be like 600/s") }
            config.rate = perSecond
        }
        config.maxInFlight = max(1, maxInFlight)
        guard let limit = Duration(parsing: timeout), limit > .zero else { throw ValidationError("--timeout must be a positive duration") }
        config.timeout = limit.asSeconds
        return config
    }

    func run() async throws {
        let config = try resolve()
        let showProgress = !quiet && !json
        if showProgress {
            let mode = config.rate.map { "open loop at \(Format.number($0))/s" } ?? "\(config.users) users at \(config.spawnRate)/s"
            let limit = config.requestLimit.map { " or \($0) requests" } ?? ""
            FileHandle.standardError.write(Data("flashsale load: \(config.endpoint.method) \(config.host)\(config.endpoint.path) — \(mode) for \(Format.seconds(config.duration))\(limit)\n".utf8))
        }
        let result = try await LoadGenerator(configuration: config).run { sample in
            guard showProgress else { return }
            let line = String(format: "[%3.0fs] users %d  reqs %d  fails %d  %.1f req/s  p50 %.0f ms  p99 %.0f ms",
                              sample.elapsed, sample.users, sample.total.requests, sample.total.failures, sample.requestsPerSecond,
                              sample.window.percentileMillis(50), sample.window.percentileMillis(99))
            FileHandle.standardError.write(Data((isatty(2) != 0 ? "\r\(line)   " : "\(line)\n").utf8))
        }
        if showProgress, isatty(2) != 0 { FileHandle.standardError.write(Data("\n".utf8)) }
        if let csv {
            let files = try result.writeCSV(prefix: csv)
            if !json { FileHandle.standardError.write(Data("wrote \(files.joined(separator: ", "))\n".utf8)) }
        }
        print(json ? result.json : result.summary)
    }
}
