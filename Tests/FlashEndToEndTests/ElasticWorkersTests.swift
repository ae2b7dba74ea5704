import AsyncHTTPClient
import FlashBackend
import Foundation
import NIOCore
import Synchronization
import Testing

/// `--workers auto` on real processes: a step from nothing to a sustained rate and back.
@Suite("Elastic workers", .serialized)
struct ElasticWorkersTests {
    /// 200 ms charges; an order should wait at most 2 s before its charge starts; the pool
    /// shrinks 2 s after the need falls.
    static let auto = ["--workers", "auto", "--min-workers", "1", "--max-workers", "100", "--target-wait", "2s",
                       "--scale-down-window", "2s", "--payment-latency", "200ms"]

    /// One reading of the fleet.
    struct Reading: Sendable {
        var time: Double
        /// Workers of each process with a pool, as it last reported.
        var workers: [Int]
        var oldestAge: Double
        var visible: Int
    }

    /// What a sale's tasks share.
    final class SaleLog: Sendable {
        let accepted = Atomic<Int>(0)
        let done = Atomic<Bool>(false)
        let readings = Mutex<[Reading]>([])
    }

    /// Sends `rate` orders a second for `seconds` (open loop: each on its own task, at its
    /// instant), while reading `/stats` every 100 ms; returns the readings and the orders accepted.
    static func sale(_ client: APIClient, rate: Int, seconds: Int) async throws -> (readings: [Reading], accepted: Int) {
        let clock = ContinuousClock()
        let start = clock.now
        let log = SaleLog()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                while !log.done.load(ordering: .relaxed) {
                    if let stats = try? await FleetTests.stats(client) {
                        let reading = Reading(time: (clock.now - start).asSeconds,
                                              workers: stats.processes.filter { $0.kind != .api }.map(\.workers),
                                              oldestAge: stats.queue.oldestAgeSeconds, visible: stats.queue.visible)
                        log.readings.withLock { $0.append(reading) }
                    }
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            try await withThrowingTaskGroup(of: Void.self) { senders in
                for n in 0..<(rate * seconds) {
                    try await Task.sleep(until: start + .seconds(Double(n) / Double(rate)), clock: .continuous)
                    senders.addTask {
                        let reply = try await client.call(.POST, "/orders/async", json: #"{"customer_id":"e\#(n)","items":[{"product_id":"PROD-001","quantity":1,"price":10}]}"#)
                        if reply.status == 202 { log.accepted.add(1, ordering: .relaxed) }
                    }
                }
                try await senders.waitForAll()
            }
            log.done.store(true, ordering: .relaxed)
            try await group.waitForAll()
        }
        return (log.readings.withLock { $0 }, log.accepted.load(ordering: .relaxed))
    }

    /// The workers of every pool, summed, at the readings within `range` seconds.
    static func totals(_ readings: [Reading], in range: ClosedRange<Double>) -> [Int] {
        readings.filter { range.contains($0.time) }.map { $0.workers.reduce(0, +) }
    }

    static func body(_ http: HTTPClient, _ url: String) async throws -> String {
        let response = try await http.execute(HTTPClientRequest(url: url), timeout: .seconds(60))
        return String(buffer: try await response.body.collect(upTo: 1 << 22))
    }

    /// A gauge's value in a Prometheus exposition (the first sample of that name, no labels).
    static func gauge(_ name: String, in text: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.dropFirst(name.count + 1))
        }
        return nil
    }

    @Test func elasticSettingsNeedWorkersAutoAndConsistentBounds() throws {
        let alone = try ServerProcess.runToExit(["--min-workers", "5"])
        #expect(alone.status != 0)
        #expect(alone.errors.contains("--min-workers needs --workers auto"), "\(alone.errors)")
        let crossed = try ServerProcess.runToExit(["--workers", "auto", "--min-workers", "10", "--max-workers", "5"])
        #expect(crossed.status != 0)
        #expect(crossed.errors.contains("--min-workers (10) must not be above --max-workers (5)"), "\(crossed.errors)")
        let zero = try ServerProcess.runToExit(["--workers", "auto", "--min-workers", "0"])
        #expect(zero.status != 0)
        #expect(zero.errors.contains("--min-workers"), "\(zero.errors)")
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }

    @Test func aStepIsCarriedAfterAShortRampAndThePoolReturnsToItsMinimum() async throws {
        let data = ServerProcess.temporaryDataPath()
        let http = FleetTests.httpClient()
        do {
            let server = try await ServerProcess(dataPath: data, arguments: Self.auto)
            let client = APIClient(http: http, base: server.baseURL)
            _ = try await FleetTests.stats(client, within: .seconds(30)) { $0.processes.contains { $0.kind == .server && $0.workers == 1 } }
            // 50 orders a second for 8 s: Little's law says 50 × 0.2 s = 10 workers.
            let (readings, accepted) = try await Self.sale(client, rate: 50, seconds: 8)
            #expect(accepted == 400)
            let during = Self.totals(readings, in: 2...8)
            #expect((during.max() ?? 0) >= 5, "the pool never grew: \(during)")
            #expect((during.max() ?? 0) <= 60, "the pool grew far past the need: \(during)")
            // After the ramp the oldest message waits less than the target (2 s) before its
            // charge starts (its age counts the charge's 200 ms too).
            let ages = readings.filter { (4...8).contains($0.time) }.map(\.oldestAge)
            #expect(Self.median(ages) <= 2.2, "oldest ages after the ramp: \(ages)")
            // Every order is charged, and the pool returns to its minimum after the sale.
            let settled = try await FleetTests.stats(client, within: .seconds(60)) {
                $0.orders.completed == 400 && $0.processes.first { $0.kind == .server }?.workers == 1
            }
            #expect(settled.orders.completed == 400)
            #expect(settled.processes.first { $0.kind == .server }?.workers == 1)
            // What outside autoscalers read: all of it there, and calm after the sale.
            // (Once the arrival rate it estimates has decayed, it recommends no worker process.)
            try await expectEventually(timeout: .seconds(60)) {
                Self.gauge("flashsale_worker_processes_recommended", in: try await Self.body(http, server.baseURL + "/metrics")) == 0
            }
            let text = try await Self.body(http, server.baseURL + "/metrics")
            for name in ["flashsale_workers_recommended", "flashsale_worker_processes_recommended", "flashsale_queue_backlog_per_worker",
                         "flashsale_process_workers_target", "flashsale_arrival_rate", "flashsale_process_payment_service_seconds",
                         "flashsale_queue_oldest_message_age_seconds"] {
                #expect(Self.gauge(name, in: text) != nil, "\(name) missing from /metrics")
            }
            #expect(Self.gauge("flashsale_process_workers", in: text) == 1)
            #expect(Self.gauge("flashsale_workers_recommended", in: text) == 0)
            // The pool learnt the gateway's pace from its charges (200 ms, and the pool's own time).
            let service = try #require(Self.gauge("flashsale_process_payment_service_seconds", in: text))
            #expect(service >= 0.2 && service < 2, "service time \(service)")
            #expect(try await server.terminate() == 0)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    @Test func aGatewayAtItsLimitIsNotHammeredWithMoreWorkers() async throws {
        // The gateway charges 5 at a time (200 ms each: 25 a second); 50 orders a second arrive.
        // Little's law on the growing backlog would ask for the maximum (100); more workers
        // would only wait in the gateway's line.
        let data = ServerProcess.temporaryDataPath()
        let http = FleetTests.httpClient()
        do {
            let server = try await ServerProcess(dataPath: data, arguments: Self.auto + ["--payment-concurrency", "5"])
            let client = APIClient(http: http, base: server.baseURL)
            let (readings, accepted) = try await Self.sale(client, rate: 50, seconds: 8)
            #expect(accepted == 400)
            let late = Self.totals(readings, in: 5...8).map(Double.init)
            #expect(Self.median(late) <= 20, "workers while the gateway was the limit: \(late)")
            #expect(readings.last!.visible > 0, "the gateway was not the limit after all")
            let text = try await Self.body(http, server.baseURL + "/metrics")
            let ceiling = try #require(Self.gauge("flashsale_process_workers_gateway_ceiling", in: text))
            #expect(ceiling <= 20, "the gateway's ceiling as the pool sees it: \(ceiling)")
            // Every order is charged all the same, at the gateway's pace.
            let settled = try await FleetTests.stats(client, within: .seconds(90)) { $0.orders.completed == 400 }
            #expect(settled.orders.completed == 400)
            #expect(try await server.terminate() == 0)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    @Test func twoWorkerProcessesTogetherSettleNearTheNeedNotTwiceIt() async throws {
        try await Self.twoWorkers(rate: 50, seconds: 10, payment: "400ms", shared: [])
    }

    @Test(.enabled(if: TestPostgresServer.url != nil))
    func twoWorkerProcessesOnPostgreSQLTogetherSettleNearTheNeed() async throws {
        let schema = "elastic_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try await Self.twoWorkers(rate: 50, seconds: 10, payment: "400ms",
                                  shared: ["--database", try #require(TestPostgresServer.url) + "?schema=\(schema)"])
    }

    /// An API and two `worker --workers auto` processes sharing a backend (`shared`, with the
    /// API's and the workers' own arguments), under `rate` orders a second of `payment` charges
    /// for `seconds`: together they run about the need (rate × payment), not twice it, both take
    /// a share, every order is charged, and both return to one worker after the sale.
    static func twoWorkers(rate: Int, seconds: Int, payment: String, shared: [String], api: [String] = [], worker: [String] = [],
                           environment: [String: String] = [:]) async throws {
        let data = ServerProcess.temporaryDataPath()
        let http = FleetTests.httpClient()
        var started: [ServerProcess] = []
        do {
            let apiProcess = try await ServerProcess(dataPath: data, arguments: shared + api + ["--workers", "0"], environment: environment)
            started.append(apiProcess)
            let client = APIClient(http: http, base: apiProcess.baseURL)
            let arguments = shared + worker + Self.auto.map { $0 == "200ms" ? payment : $0 }
            for _ in 0..<2 { started.append(try await ServerProcess("worker", dataPath: data, arguments: arguments, environment: environment)) }
            _ = try await FleetTests.stats(client, within: .seconds(60)) { FleetTests.workerProcesses($0).count == 2 }
            let (readings, accepted) = try await Self.sale(client, rate: rate, seconds: seconds)
            let total = rate * seconds
            #expect(accepted == total)
            let need = Double(rate) * (try #require(Duration(parsing: payment))).asSeconds
            let steady = readings.filter { (Double(seconds) / 2...Double(seconds)).contains($0.time) && $0.workers.count == 2 }
            let totals = steady.map { Double($0.workers.reduce(0, +)) }
            // Together near the need; each alone carrying the whole need would make twice it.
            #expect(Self.median(totals) >= 0.6 * need, "the fleet's workers: \(totals), need \(need)")
            #expect(Self.median(totals) <= 1.5 * need, "the fleet's workers: \(totals), need \(need)")
            // Both took a share.
            #expect(steady.contains { Double($0.workers.min()!) >= need / 4 }, "one process did all the work: \(steady.map(\.workers))")
            let settled = try await FleetTests.stats(client, within: .seconds(90)) {
                $0.orders.completed == total && FleetTests.workerProcesses($0).allSatisfy { $0.workers == 1 }
            }
            #expect(settled.orders.completed == total)
            for process in started.reversed() { #expect(try await process.terminate() == 0) }
        } catch {
            for process in started { process.kill9() }
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}
