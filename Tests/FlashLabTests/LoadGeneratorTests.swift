import FlashCore
import FlashServer
import Foundation
import Logging
import Testing
@testable import FlashLab

@Suite("Load generator against a local server", .serialized)
struct LoadGeneratorTests {
    static var logger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    static func server(workers: Int = 0, latency: Duration = .milliseconds(5), syncTimeout: Duration = .seconds(10)) -> FlashConfiguration {
        var config = FlashConfiguration()
        config.backend.path = NSTemporaryDirectory() + "flashsale-load-\(UUID().uuidString).db"
        config.workers.count = workers
        config.payment.latency = .fixed(latency)
        config.api.syncTimeout = syncTimeout
        return config
    }

    /// Runs the generator (async orders, configured by `configure`) against a fresh server:
    /// its result, and how many orders the server stored.
    static func runCountingOrders(_ configure: @escaping @Sendable (inout LoadConfiguration) -> Void) async throws -> (LoadResult, Int) {
        try await LabServer.with(server(), logger: logger) { url, system in
            var config = LoadConfiguration(host: url)
            config.endpoint = .async
            configure(&config)
            let result = try await LoadGenerator(configuration: config).run()
            return (result, try await system.store.counts().total)
        }
    }

    @Test func closedLoopCountsEveryRequestTheServerSaw() async throws {
        let (result, orders) = try await Self.runCountingOrders { config in
            config.users = 4
            config.spawnRate = 100
            config.wait = 0.001...0.003
            // The run ends on an event, its 20th answer, not on the clock, so it sends and counts
            // the same 20 on any machine. The duration and the per-request timeout only bound a
            // broken run or a server that never answers: generous, because a request takes
            // milliseconds (seconds on a starved machine) and each user sends about 5.
            config.requestLimit = 20
            config.duration = 120
            config.timeout = 30
        }
        // Exactly the limit, and exactly what the server stored: no request lost or counted
        // twice, none sent beyond the limit, none cut off.
        #expect(result.aggregated.requests == 20)
        #expect(orders == 20)
        #expect(result.aggregated.failures == 0)
        #expect(result.statusCodes == [202: 20])
        let a = result.aggregated
        #expect(a.minMillis <= a.medianMillis)
        #expect(a.percentileMillis(50) <= a.percentileMillis(95))
        #expect(a.percentileMillis(95) <= a.percentileMillis(100))
        #expect(abs(a.percentileMillis(100) - a.maxMillis) <= a.maxMillis * 0.01 + 0.01)
        #expect(result.endpoints.map(\.name) == ["/orders/async"])
        // The history's last row, written when the limit ended the run, carries all of it.
        #expect(result.history.last?.total.requests == 20)
        #expect(result.elapsed < 120)
    }

    @Test func aClosedLoopCutAtItsDeadlineCountsOnlyAnsweredRequests() async throws {
        let (result, orders) = try await Self.runCountingOrders { config in
            config.users = 4
            config.spawnRate = 100
            config.wait = 0.001...0.003
            config.duration = 1
        }
        // How many requests fit in the second is the machine's business; these hold at any
        // speed. As with Locust's --run-time, requests still in flight at the deadline (at most
        // one per user) are cancelled and not counted, neither as answers nor as failures,
        // though the server may have stored them.
        #expect(orders >= result.aggregated.requests)
        #expect(orders <= result.aggregated.requests + 4)
        #expect(result.aggregated.failures == 0)
        #expect(result.statusCodes[202, default: 0] == result.aggregated.requests)
        #expect(result.statusCodes.keys.allSatisfy { $0 == 202 })
        // Without a request limit the run lasts its whole duration, with at least one history row.
        #expect(result.elapsed >= 1)
        #expect(!result.history.isEmpty)
    }

    @Test func openLoopSendsAtTheIntendedRate() async throws {
        let result = try await LabServer.with(Self.server(), logger: Self.logger) { url, _ in
            var config = LoadConfiguration(host: url)
            config.endpoint = .async
            config.rate = 200
            config.duration = 1
            // Each send is waited for, however late (none is cut off at the deadline); the
            // per-request timeout is only there for a server that never answers, so generous.
            config.timeout = 30
            return try await LoadGenerator(configuration: config).run()
        }
        // One request per 5 ms of the second: exactly 200 intended sends, counted by their
        // intended times, not by when a busy machine got round to them.
        #expect(result.aggregated.requests == 200)
        #expect(result.aggregated.failures == 0)
    }

    @Test func aRequestLimitEndsTheOpenLoopToo() async throws {
        let (result, orders) = try await Self.runCountingOrders { config in
            config.rate = 100
            // 10 sends in the first 0.1 s, then the run ends with their answers; the duration
            // and timeout only bound a broken run, so they are generous.
            config.requestLimit = 10
            config.duration = 120
            config.timeout = 30
        }
        #expect(result.aggregated.requests == 10)
        #expect(orders == 10)
        #expect(result.aggregated.failures == 0)
        #expect(result.elapsed < 120)
    }

    @Test func failuresAndTimeoutsAreCountedAsFailures() async throws {
        let refused = try await LabServer.with(Self.server(latency: .milliseconds(300), syncTimeout: .milliseconds(50)), logger: Self.logger) { url, system in
            // The test holds the one checkout lane for the whole run, so every order finds the
            // line full and is refused at once: the predicted wait, one 300 ms charge, exceeds
            // the 50 ms limit (503 overloaded). Which orders overlapped in time no longer matters.
            let lanes = system.services.lanes
            try #require(await lanes.enter(timeout: .seconds(60)))
            defer { lanes.leave(serviceTime: nil) }
            var config = LoadConfiguration(host: url)
            config.endpoint = .sync
            // Open loop: exactly 10 sends, each waited for. A refusal is immediate; the timeout
            // only bounds a server that never answers, so it is generous.
            config.rate = 20
            config.duration = 0.5
            config.timeout = 30
            return try await LoadGenerator(configuration: config).run()
        }
        #expect(refused.aggregated.requests == 10)
        #expect(refused.statusCodes == [503: 10])
        #expect(refused.aggregated.failures == 10)
        #expect(refused.errors.count == 1)
        #expect(refused.errors.contains { $0.error == "HTTP 503 (overloaded)" && $0.count == 10 })

        // The charge takes 2 s and the client gives up after 0.2 s: a slower machine only makes
        // each of the 3 sends (10/s for 0.3 s, counted by intended time) time out more surely.
        let slow = try await LabServer.with(Self.server(latency: .seconds(2)), logger: Self.logger) { url, _ in
            var config = LoadConfiguration(host: url)
            config.endpoint = .sync
            config.rate = 10
            config.duration = 0.3
            config.timeout = 0.2
            return try await LoadGenerator(configuration: config).run()
        }
        #expect(slow.aggregated.requests == 3)
        #expect(slow.aggregated.failures == 3)
        #expect(slow.errors.first?.error.hasPrefix("timeout") == true)
        #expect(slow.failuresCSV.contains("timeout"))
    }

    @Test func csvFilesCarryLocustsHeaders() async throws {
        let result = try await LabServer.with(Self.server(), logger: Self.logger) { url, _ in
            var config = LoadConfiguration(host: url)
            config.endpoint = .path("/health", method: "GET")
            // Exactly 10 sends (50/s for 0.2 s, counted by intended time), each waited for; the
            // timeout only bounds a server that never answers, so it is generous.
            config.rate = 50
            config.duration = 0.2
            config.timeout = 30
            return try await LoadGenerator(configuration: config).run()
        }
        let prefix = NSTemporaryDirectory() + "flashsale-csv-\(UUID().uuidString)"
        let files = try result.writeCSV(prefix: prefix)
        #expect(files.map { String($0.dropFirst(prefix.count)) } == ["_stats.csv", "_stats_history.csv", "_failures.csv"])
        let stats = try String(contentsOfFile: files[0], encoding: .utf8).split(separator: "\n")
        #expect(stats[0] == "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%")
        #expect(stats[1].hasPrefix("GET,/health,10,0,"))
        #expect(stats.last?.hasPrefix(",Aggregated,10,0,") == true)
        let history = try String(contentsOfFile: files[1], encoding: .utf8).split(separator: "\n")
        #expect(history[0] == "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,Total Average Content Size")
        #expect(try String(contentsOfFile: files[2], encoding: .utf8) == "Method,Name,Error,Occurrences\n")
        #expect(result.summary.contains("# reqs"))
        #expect(result.summary.contains("99.99%"))
        #expect(result.json.contains("\"requests\":10"))
    }
}

@Suite("Lab")
struct LabTests {
    @Test func aTinyLabRunWritesEveryFileOfTheReport() async throws {
        var config = LabConfiguration()
        // A small sale at a fast scale, run as given (no check of this machine's pace): 5
        // orders/s for 30 s of seed time is 500 requests a wall second for 0.3 s.
        config.timeScale = 0.01
        config.adaptTimeScale = false
        config.saleRate = 5
        config.saleDuration = 30
        config.workerCounts = [1, 50]
        config.observeAfterSale = 10
        config.syncNormalDuration = 60
        config.syncFlashDuration = 60
        config.syncFlashUsers = 4
        let results = try await Lab(configuration: config).run { _ in }
        #expect(results.calibrations.isEmpty)
        #expect(results.syncRuns.count == 2)
        #expect(results.saleRuns.map(\.workers) == [1, 50])
        // How many orders a machine gets through is its own business (possibly few on a busy
        // one), so each sale is checked against what the load generator itself counted and
        // what the server stored, which hold at any speed.
        for run in results.saleRuns + [results.elastic].compactMap({ $0 }) {
            // Every 202 is an order on the sale's server; open loop, no request is cut off.
            #expect(run.arrivals >= run.load.statusCodes[202, default: 0])
            #expect(run.arrivals <= run.load.aggregated.requests)
            if run.cutOff {
                // Watched until the cut: what was left is projected beyond it.
                #expect(run.completed + run.failed <= run.arrivals)
                #expect(run.emptySeconds >= run.observedSeconds)
            } else {
                // The lab waits until every order that arrived is finished.
                #expect(run.completed + run.failed == run.arrivals)
            }
            // Each order is one message: the queue, sampled from the start, never held more.
            #expect(!run.depth.isEmpty)
            #expect(run.peakDepth <= run.arrivals)
        }
        // One worker cannot finish 150 payments of 30 ms in 0.1 s after the sale on any machine.
        #expect(results.saleRuns[0].cutOff || results.saleRuns[0].arrivals < 10)
        #expect(!results.minimumTrials.isEmpty)
        // Phase 6 ran the elastic pool and sampled its size, within its bounds.
        let elastic = try #require(results.elastic)
        #expect(elastic.workers == 0)
        #expect(!elastic.scaling.isEmpty)
        #expect(elastic.scaling.allSatisfy { (1...1_000).contains($0.workers) })
        let directory = NSTemporaryDirectory() + "flashsale-lab-report-\(UUID().uuidString)"
        let files = try LabReport(results: results).write(to: directory)
        #expect(files.map { ($0 as NSString).lastPathComponent } == LabReport.files)
        for file in files {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            #expect(!text.isEmpty, "\(file)")
            if file.hasSuffix(".svg") { #expect(text.hasPrefix("<svg") && text.contains("</svg>"), "\(file)") }
        }
        let report = try String(contentsOfFile: files[0], encoding: .utf8)
        for heading in ["## Phase 1", "## Phase 2", "## Phase 3", "## Phase 4", "## Phase 5", "### Minimum workers", "## Phase 6", "Demand delivered"] {
            #expect(report.contains(heading), "\(heading)")
        }
        #expect(report.contains("| 1 | "))
    }
}
