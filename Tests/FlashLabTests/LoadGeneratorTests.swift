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

    @Test func closedLoopCountsEveryRequestTheServerSaw() async throws {
        let (result, orders) = try await LabServer.with(Self.server(), logger: Self.logger) { url, system in
            var config = LoadConfiguration(host: url)
            config.endpoint = .async
            config.users = 4
            config.spawnRate = 100
            config.wait = 0.001...0.003
            config.duration = 2
            let result = try await LoadGenerator(configuration: config).run()
            return (result, try await system.store.counts().total)
        }
        #expect(result.aggregated.requests >= 4)
        // As with Locust's --run-time, requests still in flight at the deadline (at most one per
        // user) are cancelled and not counted, though the server may have stored them.
        #expect(orders >= result.aggregated.requests)
        #expect(orders <= result.aggregated.requests + 4)
        #expect(result.aggregated.failures == 0)
        #expect(result.statusCodes == [202: result.aggregated.requests])
        let a = result.aggregated
        #expect(a.minMillis <= a.medianMillis)
        #expect(a.percentileMillis(50) <= a.percentileMillis(95))
        #expect(a.percentileMillis(95) <= a.percentileMillis(100))
        #expect(abs(a.percentileMillis(100) - a.maxMillis) <= a.maxMillis * 0.01 + 0.01)
        #expect(result.endpoints.map(\.name) == ["/orders/async"])
        #expect(!result.history.isEmpty)
    }

    @Test func openLoopSendsAtTheIntendedRate() async throws {
        let result = try await LabServer.with(Self.server(), logger: Self.logger) { url, _ in
            var config = LoadConfiguration(host: url)
            config.endpoint = .async
            config.rate = 200
            config.duration = 1
            return try await LoadGenerator(configuration: config).run()
        }
        // One request per 5 ms of the second: exactly 200 intended sends.
        #expect(result.aggregated.requests == 200)
        #expect(result.aggregated.failures == 0)
    }

    @Test func failuresAndTimeoutsAreCountedAsFailures() async throws {
        let refused = try await LabServer.with(Self.server(latency: .milliseconds(300), syncTimeout: .milliseconds(50)), logger: Self.logger) { url, _ in
            var config = LoadConfiguration(host: url)
            config.endpoint = .sync
            config.users = 4
            config.spawnRate = 100
            config.wait = 0.001...0.002
            config.duration = 2
            return try await LoadGenerator(configuration: config).run()
        }
        let overloaded = refused.statusCodes[503] ?? 0
        #expect(overloaded > 0)
        #expect(refused.aggregated.failures == refused.aggregated.requests - (refused.statusCodes[200] ?? 0))
        #expect(refused.errors.contains { $0.error == "HTTP 503 (overloaded)" && $0.count == overloaded })

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
            config.rate = 50
            config.duration = 0.2
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
        config.timeScale = 0.001
        config.workerCounts = [1, 50]
        config.syncNormalDuration = 60
        config.syncFlashDuration = 60
        // 0.3 s of sale: long enough that orders arrive even on a box busy with other tests.
        config.saleDuration = 300
        config.asyncUsers = 4
        config.syncFlashUsers = 4
        let results = try await Lab(configuration: config).run { _ in }
        #expect(results.syncRuns.count == 2)
        #expect(results.saleRuns.map(\.workers) == [1, 50])
        let one = try #require(results.saleRuns.first)
        #expect(one.arrivals > 0)
        #expect(one.completed + one.failed == one.arrivals)
        #expect(one.peakDepth > 0)
        #expect(!results.minimumTrials.isEmpty)
        let directory = NSTemporaryDirectory() + "flashsale-lab-report-\(UUID().uuidString)"
        let files = try LabReport(results: results).write(to: directory)
        #expect(files.map { ($0 as NSString).lastPathComponent } == LabReport.files)
        for file in files {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            #expect(!text.isEmpty, "\(file)")
            if file.hasSuffix(".svg") { #expect(text.hasPrefix("<svg") && text.contains("</svg>"), "\(file)") }
        }
        let report = try String(contentsOfFile: files[0], encoding: .utf8)
        for heading in ["## Phase 1", "## Phase 2", "## Phase 3", "## Phase 4", "## Phase 5", "### Minimum workers"] {
            #expect(report.contains(heading), "\(heading)")
        }
        #expect(report.contains("| 1 | "))
    }
}
