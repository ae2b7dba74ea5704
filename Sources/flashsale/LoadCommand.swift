import ArgumentParser
import FlashCore
import FlashLab
import Foundation

/// `flashsale load`: Locust-style load against any server (this one, or the seeds' AWS endpoints).
struct LoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Load a server: closed-loop users like Locust, or an open-loop rate (--rate), in stages, with thresholds that gate a release.",
        discussion: """
            Examples:
              flashsale load --host http://127.0.0.1:8080 --endpoint sync --users 20 --spawn-rate 10 --duration 60s
              flashsale load --host http://127.0.0.1:8080 --endpoint async --rate 600/s --duration 30s --csv run1
              flashsale load --host http://127.0.0.1:8080 --stages 10s:100/s,30s:1000/s,10s:0/s \\
                --threshold 'p99<50ms' --threshold 'errors<1%' --html report.html
              flashsale load --host http://127.0.0.1:8080 --endpoint /orders/async --rate 200/s --duration 30s \\
                --products sku-1,sku-2 --header 'Idempotency-Key: {{uuid}}' \\
                --body '{"customer_id": "c{{customer}}", "items": [{"product_id": "{{product}}", "quantity": 1}]}'

            Templates (--body, --header) take {{counter}}, {{uuid}}, {{customer}}, {{product}}, {{random:A:B}} and {{env:NAME}}. \
            Exit status: 0 when every threshold is met, 1 when one is missed, when every request failed, or when nothing answers at --host.
            """)

    @Option(help: "Base URL of the server.") var host = "http://127.0.0.1:8080"
    @Option(help: "sync, async, buy, or a path such as /orders/async or /health.") var endpoint = "async"
    @Option(help: "HTTP method for a path endpoint.") var method = "POST"
    @Option(help: "Closed loop: simulated users.") var users = 10
    @Option(help: "Users started per second.") var spawnRate = 10.0
    @Option(help: "Think time between a user's requests, e.g. 100ms..500ms.") var wait = "100ms..500ms"
    @Option(help: "How long to run.") var duration: String?
    @Option(help: "Stop after this many requests in all (as hey -n); the run ends once they are all answered, none cut off, or at --duration.") var requests: Int?
    @Option(help: "Open loop: requests per second (e.g. 600/s); latency counts from each intended send time. With --stages: the rate to start from.") var rate: String?
    @Option(help: "Ramp in stages, each DURATION:TARGET, the target a rate (open loop: 10s:100/s,30s:1000/s,10s:0/s) or users (closed loop: 10s:50,30s:50,5s:0); the run lasts their sum.") var stages: String?
    @Option(help: "Open loop: most requests in flight.") var maxInFlight = 10_000
    @Option(help: "Per-request timeout; timeouts count as failures.") var timeout = "10s"
    @Option(help: "Fail the run (exit 1) unless this holds at the end: p50/p95/p99/p99.9<DURATION, avg<DURATION, max<DURATION, errors<PERCENT, rps>N. Repeatable.") var threshold: [String] = []
    @Option(help: "The body of every request, a template ({{counter}}, {{uuid}}, {{customer}}, {{product}}, {{random:A:B}}, {{env:NAME}}); @FILE reads it from a file. Default: the seeds' random orders.") var body: String?
    @Option(help: "A header sent with every request, 'Name: value', the value a template (e.g. 'Idempotency-Key: {{uuid}}', 'Authorization: Bearer {{env:TOKEN}}'). Repeatable.") var header: [String] = []
    @Option(help: "The products {{product}} picks from, comma-separated [default PROD-001…PROD-100].") var products: String?
    @Option(help: "How long to keep trying a --host that does not answer before giving up (exit 1).") var connectWait = "5s"
    @Option(help: "Write Locust-format PREFIX_stats.csv, PREFIX_stats_history.csv, PREFIX_failures.csv and the PREFIX_report.html beside them.") var csv: String?
    @Option(help: "Write an HTML report (rate and latency over time, the percentile table) to this file.") var html: String?
    @Flag(help: "Print the result as JSON instead of the summary.") var json = false
    @Flag(help: "No progress line.") var quiet = false

    func validate() throws {
        _ = try resolve()
    }

    func resolve() throws -> (LoadConfiguration, [LoadThreshold]) {
        do { try Reachability.checkURL(host, option: "--host") } catch { throw ValidationError(error.description) }
        var config = LoadConfiguration(host: host)
        guard let endpoint = LoadConfiguration.Endpoint(parsing: endpoint, method: method) else {
            throw ValidationError("--endpoint must be sync, async, buy or a path starting with /, not '\(endpoint)'")
        }
        config.endpoint = endpoint
        guard users >= 1 else { throw ValidationError("--users must be at least 1") }
        config.users = users
        guard spawnRate > 0 else { throw ValidationError("--spawn-rate must be positive") }
        config.spawnRate = spawnRate
        config.wait = try Settings.durationRange(wait, option: "--wait")
        if let requests {
            guard requests >= 1 else { throw ValidationError("--requests must be at least 1") }
            config.requestLimit = requests
        }
        if let rate {
            guard let perSecond = RateParsing.perSecond(rate), perSecond > 0 else { throw ValidationError("--rate must be like 600/s, not '\(rate)'") }
            config.rate = perSecond
        }
        if let stages {
            do { config.stages = try LoadStages(parsing: stages) } catch { throw ValidationError(error.description) }
            if duration != nil { throw ValidationError("--stages set the run's length; leave out --duration") }
            if config.stages?.kind == .users, rate != nil { throw ValidationError("--stages in users run a closed loop; leave out --rate (or give the stages as rates, 100/s)") }
            config.duration = config.stages!.duration
        } else {
            guard let length = Duration(parsing: duration ?? "30s"), length > .zero else {
                throw ValidationError("--duration must be a positive duration, \(Duration.acceptedForms)")
            }
            config.duration = length.asSeconds
        }
        config.maxInFlight = max(1, maxInFlight)
        guard let limit = Duration(parsing: timeout), limit > .zero else { throw ValidationError("--timeout must be a positive duration, \(Duration.acceptedForms)") }
        config.timeout = limit.asSeconds
        if let products {
            config.products = products.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !config.products.isEmpty else { throw ValidationError("--products must list at least one product id") }
        }
        do {
            if let body {
                let text: String
                if body.hasPrefix("@") {
                    let path = String(body.dropFirst())
                    guard let contents = try? String(contentsOfFile: path, encoding: .utf8) else {
                        throw ValidationError("--body \(body): cannot read the file \(path)")
                    }
                    text = contents
                } else {
                    text = body
                }
                config.bodyTemplate = try RequestTemplate(text)
            }
            config.headers = try header.map { line in
                guard let colon = line.firstIndex(of: ":"), colon > line.startIndex else {
                    throw ValidationError("--header must be 'Name: value', not '\(line)'")
                }
                let name = line[..<colon].trimmingCharacters(in: .whitespaces)
                guard name.allSatisfy({ $0.isLetter || $0.isNumber || "-_".contains($0) }) else {
                    throw ValidationError("--header: '\(name)' is not a header name")
                }
                return LoadConfiguration.Header(name: name, value: try RequestTemplate(line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
            }
            return (config, try threshold.map { try LoadThreshold(parsing: $0) })
        } catch let error as TemplateError {
            throw ValidationError(error.description)
        }
    }

    func run() async throws {
        let (config, thresholds) = try resolve()
        guard let patience = Duration(parsing: connectWait) else { throw ValidationError("--connect-wait must be a duration, \(Duration.acceptedForms)") }
        let showProgress = !quiet && !json
        // Nothing listening fails now, naming the URL, not after every request has timed out.
        try await Reachability.wait(for: config.host + "/", within: patience) { error, left in
            FileHandle.standardError.write(Data("waiting for \(config.host): \(error); trying again (\(left.shortDescription) left)\n".utf8))
        }
        if showProgress {
            let mode: String
            if let stages = config.stages {
                mode = "stages \(stages.stages.map { "\(Format.seconds($0.duration)):\(Format.number($0.target))\(stages.kind == .rate ? "/s" : " users")" }.joined(separator: ", "))"
            } else {
                mode = config.rate.map { "open loop at \(Format.number($0))/s" } ?? "\(config.users) users at \(config.spawnRate)/s"
            }
            let limit = config.requestLimit.map { " or \($0) requests" } ?? ""
            FileHandle.standardError.write(Data("flashsale load: \(config.endpoint.method) \(config.host)\(config.endpoint.path) — \(mode) for \(Format.seconds(config.duration))\(limit)\n".utf8))
        }
        let total = config.duration
        let result = try await LoadGenerator(configuration: config).run { sample in
            guard showProgress else { return }
            let left = max(0, total - sample.elapsed)
            let line = String(format: "[%3.0fs, %3.0fs left] users %d  reqs %d  fails %d  %.1f req/s  p50 %.0f ms  p99 %.0f ms",
                              sample.elapsed, left, sample.users, sample.total.requests, sample.total.failures, sample.requestsPerSecond,
                              sample.window.percentileMillis(50), sample.window.percentileMillis(99))
            FileHandle.standardError.write(Data((isatty(2) != 0 ? "\r\(line)   " : "\(line)\n").utf8))
        }
        if showProgress, isatty(2) != 0 { FileHandle.standardError.write(Data("\n".utf8)) }
        var written: [String] = []
        if let csv {
            written += try result.writeCSV(prefix: csv)
            let report = csv + "_report.html"
            try result.html.write(toFile: report, atomically: true, encoding: .utf8)
            written.append(report)
        }
        if let html {
            try result.html.write(toFile: html, atomically: true, encoding: .utf8)
            written.append(html)
        }
        if !written.isEmpty, !json { FileHandle.standardError.write(Data("wrote \(written.joined(separator: ", "))\n".utf8)) }
        print(json ? result.json : result.summary)
        let missed = thresholds.filter { !$0.isMet(by: result) }
        if !thresholds.isEmpty {
            let report = "\nThresholds:\n" + LoadThreshold.report(thresholds, for: result)
            // The JSON on standard output stays one document.
            if json { FileHandle.standardError.write(Data((report + "\n").utf8)) } else { print(report) }
        }
        if !missed.isEmpty {
            throw StartupError("\(missed.count) of \(thresholds.count) thresholds missed: \(missed.map(\.description).joined(separator: ", "))")
        }
        if result.aggregated.requests > 0, result.aggregated.failures == result.aggregated.requests {
            throw StartupError("every request failed (\(result.aggregated.requests) of \(result.aggregated.requests)); see the errors above")
        }
        if result.aggregated.requests == 0 {
            throw StartupError("no request was answered in \(Format.seconds(result.elapsed))")
        }
    }
}
