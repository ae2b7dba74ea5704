import AsyncHTTPClient
import FlashBackend
import FlashCore
import Foundation
import NIOHTTP1
import Synchronization
import Testing

/// Several processes on one SQLite file: `serve --workers 0` and `flashsale worker`s.
@Suite("A fleet of processes on one file", .serialized)
struct FleetTests {
    static let workerArguments = ["--workers", "12", "--payment-latency", "20ms", "--visibility-timeout", "2s"]

    static func stats(_ client: APIClient) async throws -> SystemStats {
        let response = try await client.http.execute(HTTPClientRequest(url: client.base + "/stats"), timeout: .seconds(60))
        let body = try await response.body.collect(upTo: 1 << 20)
        return try JSONDecoder().decode(SystemStats.self, from: Data(body.readableBytesView))
    }

    /// Reads `/stats` until a reading meets `condition` and returns that reading: a read that
    /// failed (slow, or a 503 that does not decode) is read again. After `timeout`, records an
    /// issue and returns the last reading. (Also used by ``ScaleOutTests``.)
    static func stats(_ client: APIClient, within timeout: Duration, sourceLocation: SourceLocation = #_sourceLocation,
                      where condition: (SystemStats) -> Bool) async throws -> SystemStats {
        let deadline = ContinuousClock.now + timeout
        var last: SystemStats?
        while ContinuousClock.now < deadline {
            if let reading = try? await Self.stats(client) {
                if condition(reading) { return reading }
                last = reading
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("no /stats reading met the condition within \(timeout); the last: \(String(describing: last))",
                     sourceLocation: sourceLocation)
        if let last { return last }
        return try await Self.stats(client)
    }

    /// An HTTP client for many concurrent senders: a connection for each (the default is 8 per
    /// host, and a request queued for one fails after the connect timeout, 10 s by default), and
    /// a generous connect timeout for a slow machine.
    static func httpClient() -> HTTPClient {
        HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(
            timeout: .init(connect: .seconds(60)),
            connectionPool: .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 40)))
    }

    static func workerProcesses(_ stats: SystemStats) -> [ProcessRecord] {
        stats.processes.filter { $0.kind == .worker }
    }

    @Test func anAPIAndThreeWorkersProcessEveryOrderOnceThroughAKill9AndARestart() async throws {
        let data = ServerProcess.temporaryDataPath()
        let http = Self.httpClient()
        do {
            // The fleet's lease, which the workers are given too (one setting, stored once).
            let api = try await ServerProcess(dataPath: data, arguments: ["--workers", "0", "--visibility-timeout", "2s"])
            let client = APIClient(http: http, base: api.baseURL)
            var workers: [ServerProcess] = []
            for _ in 0..<3 { workers.append(try await ServerProcess("worker", dataPath: data, arguments: Self.workerArguments)) }
            // The fleet's figures come from heartbeats: read from the reading that lists all three.
            let fleet = try await Self.stats(client, within: .seconds(60)) { Self.workerProcesses($0).count == 3 }
            #expect(fleet.workers.count == 36)
            #expect(fleet.workers.processes == 3)
            #expect(fleet.processes.filter { $0.kind == .api }.count == 1)

            // 5,000 orders from 32 clients; one worker is killed with kill -9 mid-run.
            let total = 5_000
            let accepted = Acknowledged()
            let sending = Sending()
            let victim = workers[0]
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<32 {
                    group.addTask {
                        while true {
                            let n = sending.next.add(1, ordering: .relaxed).oldValue
                            guard n < total else { return }
                            let reply = try await client.call(.POST, "/orders/async", json: #"{"customer_id":"c\#(n)","items":[{"product_id":"PROD-001","quantity":1,"price":10}]}"#)
                            if reply.status == 202, let id = reply.string("order_id") { accepted.add(id) } else { sending.refused.withLock { $0.append(reply.status) } }
                        }
                    }
                }
                group.addTask {
                    // A failed read (slow on a busy machine) is read again; a generous deadline
                    // instead of a wait forever.
                    let deadline = ContinuousClock.now + .seconds(300)
                    while ((try? await Self.stats(client))?.orders.completed ?? 0) < 1_000 {
                        guard ContinuousClock.now < deadline else {
                            Issue.record("1,000 orders were not completed within 300 s; the worker is killed now")
                            break
                        }
                        try await Task.sleep(for: .milliseconds(20))
                    }
                    victim.kill9()
                }
                try await group.waitForAll()
            }
            #expect(sending.refused.withLock { $0 }.isEmpty, "no order refused (SQLITE_BUSY would be a 5xx): \(sending.refused.withLock { $0.prefix(5) })")
            #expect(accepted.count == total)

            // The dead worker drops out of every process's view; a restarted one comes in.
            try await expectEventually(timeout: .seconds(60)) { Self.workerProcesses(try await Self.stats(client)).count == 2 }
            let replacement = try await ServerProcess("worker", dataPath: data, arguments: Self.workerArguments)
            try await expectEventually(timeout: .seconds(60)) { Self.workerProcesses(try await Self.stats(client)).count == 3 }

            // Every order completes (the dead worker's leases run out and go to the others), each
            // charged once; every process reports the same exact totals. (A message redelivered
            // when a late heartbeat let its 2 s lease run out may still be in flight a moment
            // after its order completed: the reading is the first with the queue drained too.)
            let final = try await Self.stats(client, within: .seconds(90)) {
                $0.orders.completed == total && $0.queue.visible == 0 && $0.queue.inFlight == 0
            }
            #expect(final.orders == SystemStats.Orders(total: total, pending: 0, processing: 0, completed: total, failed: 0))
            #expect(final.payments.charges == total)
            #expect(final.queue.visible == 0 && final.queue.inFlight == 0 && final.queue.deadLetter == 0)
            let side = APIClient(http: http, base: replacement.baseURL)
            let seenByWorker = try await Self.stats(side, within: .seconds(60)) { _ in true }
            #expect(seenByWorker.orders == final.orders)
            #expect(seenByWorker.payments.charges == total)
            // Both see the same live workers: from heartbeats, each fresher than 3.5 s only
            // eventually on a starved machine.
            try await expectEventually(timeout: .seconds(60)) {
                let fromAPI = Self.workerProcesses(try await Self.stats(client)).map(\.pid)
                let fromWorker = Self.workerProcesses(try await Self.stats(side)).map(\.pid)
                return Set(fromWorker) == Set(fromAPI)
            }
            for id in accepted.ids.shuffled().prefix(100) {
                #expect(try await client.call(.GET, "/orders/\(id)").string("status") == "completed")
            }
            // No process logged a lock error.
            for process in [api, workers[1], workers[2], replacement] {
                let log = (try? String(contentsOfFile: process.logPath, encoding: .utf8)) ?? ""
                #expect(!log.contains("database is locked"), "\(log.suffix(500))")
            }
            // A clean stop leaves the registry at once: gone from the first reading after its exit.
            // (The other two are listed as of their heartbeats, each fresher than 3.5 s only
            // eventually on a starved machine.)
            let leaver = Int(replacement.process.processIdentifier)
            #expect(try await replacement.terminate() == 0)
            let afterStop = try await Self.stats(client, within: .seconds(60)) { _ in true }
            #expect(!Self.workerProcesses(afterStop).contains(where: { $0.pid == leaver }), "the stopped worker is still listed")
            try await expectEventually(timeout: .seconds(60)) {
                let listed = Self.workerProcesses(try await Self.stats(client)).map(\.pid)
                return listed.count == 2 && !listed.contains(leaver)
            }
            for worker in workers.dropFirst() { _ = try await worker.terminate() }
            _ = try await api.terminate()
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    @Test func aWorkerInAnotherProcessWakesPromptlyForANewOrder() async throws {
        let data = ServerProcess.temporaryDataPath()
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let api = try await ServerProcess(dataPath: data, arguments: ["--workers", "0"])
            let worker = try await ServerProcess("worker", dataPath: data, arguments: ["--workers", "2", "--payment-latency", "1ms"])
            let client = APIClient(http: http, base: api.baseURL)
            try await expectEventually(timeout: .seconds(60)) { Self.workerProcesses(try await Self.stats(client)).count == 1 }
            // The worker is idle in a 20 s long poll; each order must not wait for it to end.
            try await Task.sleep(for: .milliseconds(300))
            var slowest: Duration = .zero
            for n in 0..<5 {
                let reply = try await client.call(.POST, "/orders/async", json: #"{"customer_id":"w\#(n)","items":[{"product_id":"P","quantity":1,"price":1}]}"#)
                let id = try #require(reply.string("order_id"))
                let sent = ContinuousClock.now
                while try await client.call(.GET, "/orders/\(id)").string("status") != "completed" {
                    if ContinuousClock.now - sent > .seconds(20) { break }
                    try await Task.sleep(for: .milliseconds(5))
                }
                slowest = max(slowest, ContinuousClock.now - sent)
                try await Task.sleep(for: .milliseconds(200))
            }
            // Real time over HTTP between processes, so the bound is generous for a loaded box (a
            // pickup is milliseconds on an idle one). A missed wake-up waits out the rest of the
            // worker's 20 s poll: over five orders, at least one would wait past 10 s.
            #expect(slowest < .seconds(10), "slowest pickup \(slowest)")
            _ = try await worker.terminate()
            _ = try await api.terminate()
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}

/// Shared by the sending tasks: the next order number, and the statuses of refused orders.
final class Sending: Sendable {
    let next = Atomic<Int>(0)
    let refused = Mutex<[Int]>([])
}
