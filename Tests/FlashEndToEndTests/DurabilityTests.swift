import AsyncHTTPClient
import FlashCore
import Foundation
import NIOHTTP1
import Synchronization
import Testing

/// What a 202 promises, checked the hard way: the real binary, real HTTP, kill -9.
@Suite("Durability of the real server", .serialized)
struct DurabilityTests {
    @Test func everyAcknowledgedOrderSurvivesKill9DuringAStormOfOrders() async throws {
        let data = ServerProcess.temporaryDataPath()
        let accepted = Acknowledged()
        // One connection per sender (the client's default is 8 per host, and a request queued for
        // a connection fails after the connect timeout), and a generous connect timeout: on a slow
        // machine no sender may stop early because the client gave up, not the server.
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(
            timeout: .init(connect: .seconds(60)),
            connectionPool: .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 16)))
        do {
            let server = try await ServerProcess(dataPath: data, arguments: ["--workers", "0"])
            let client = APIClient(http: http, base: server.baseURL)
            // 16 clients send orders as fast as they can; the server is killed mid-storm. A sender
            // stops at its first failed request (after the kill, every request fails); the 60 s
            // allowance per request is only there so that a slow reply before the kill is not one.
            let stopped = Tally()
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<16 {
                    group.addTask {
                        defer { stopped.add() }
                        while true {
                            guard let reply = try? await client.call(.POST, "/orders/async", json: seedOrder, timeout: .seconds(60)) else { return }
                            if reply.status == 202, let id = reply.string("order_id") { accepted.add(id) }
                        }
                    }
                }
                // Kill once 300 orders are acknowledged; if every sender stopped first, there is
                // no storm left to kill the server in: a failure, not a wait forever.
                while accepted.count < 300, stopped.value < 16 { try? await Task.sleep(for: .milliseconds(5)) }
                if accepted.count < 300 {
                    Issue.record("every sender stopped on a failed request after \(accepted.count) acknowledged orders, before the kill")
                }
                server.kill9()
            }
            let acknowledged = accepted.ids
            #expect(acknowledged.count >= 300)

            // Restarted with workers: every acknowledged order is there, and each is charged exactly once.
            let restarted = try await ServerProcess(dataPath: data, arguments: ["--workers", "16", "--payment-latency", "2ms"])
            let again = APIClient(http: http, base: restarted.baseURL)
            for id in acknowledged.prefix(50) {
                #expect(try await again.call(.GET, "/orders/\(id)").status == 200, "order \(id) lost")
            }
            try await expectEventually {
                let stats = try await again.stats()
                return stats.int("orders", "completed") == stats.int("orders", "total") && stats.int("queue", "visible") == 0
            }
            let stats = try await again.stats()
            let total = try #require(stats.int("orders", "total"))
            #expect(total >= acknowledged.count)
            #expect(stats.int("payments", "charges") == total)
            for id in acknowledged {
                let order = try await again.call(.GET, "/orders/\(id)")
                #expect(order.string("status") == "completed", "order \(id)")
            }
            _ = try await restarted.terminate()
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    @Test func kill9WhileChargingLosesNothingAndChargesNothingTwice() async throws {
        let data = ServerProcess.temporaryDataPath()
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let server = try await ServerProcess(dataPath: data, arguments: [
                "--workers", "4", "--payment-latency", "150ms", "--visibility-timeout", "1s"])
            let client = APIClient(http: http, base: server.baseURL)
            for _ in 0..<40 { #expect(try await client.call(.POST, "/orders/async", json: seedOrder).status == 202) }
            try await expectEventually { (try await client.stats().int("orders", "completed") ?? 0) >= 4 }
            server.kill9()
            let restarted = try await ServerProcess(dataPath: data, arguments: [
                "--workers", "8", "--payment-latency", "20ms", "--visibility-timeout", "1s"])
            let again = APIClient(http: http, base: restarted.baseURL)
            try await expectEventually { try await again.stats().int("orders", "completed") == 40 }
            let stats = try await again.stats()
            #expect(stats.int("orders", "total") == 40)
            #expect(stats.int("payments", "charges") == 40)
            #expect(stats.int("queue", "visible") == 0)
            #expect(stats.int("queue", "in_flight") == 0)
            _ = try await restarted.terminate()
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    @Test func sigtermShutsDownGracefully() async throws {
        let data = ServerProcess.temporaryDataPath()
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            // A real duration, on purpose: each charge takes 20 s, so the two that made both workers
            // busy are still in progress when SIGTERM comes (on a starved machine, the poll below,
            // the signal and the pool closing its dispatcher can take seconds; with 500 ms charges
            // a worker finished one and began a third order first). Shutdown then waits for them
            // (up to 60 s, well past their 20 s), and the exit gets 120 s in all.
            let server = try await ServerProcess(dataPath: data, arguments: [
                "--workers", "2", "--payment-latency", "20s", "--shutdown-deadline", "60s"])
            let client = APIClient(http: http, base: server.baseURL)
            for _ in 0..<6 { #expect(try await client.call(.POST, "/orders/async", json: seedOrder).status == 202) }
            try await expectEventually(timeout: .seconds(60)) { try await client.stats().int("workers", "busy") == 2 }
            #expect(try await server.terminate(timeout: .seconds(120)) == 0)
            // The two charges in progress finished before exit; the rest wait in the queue.
            let restarted = try await ServerProcess(dataPath: data, arguments: ["--workers", "0"])
            let again = APIClient(http: http, base: restarted.baseURL)
            let stats = try await again.stats()
            #expect(stats.int("orders", "completed") == 2)
            #expect(stats.int("payments", "charges") == 2)
            #expect(stats.int("queue", "visible") == 4)
            _ = try await restarted.terminate()
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}

/// The order ids the server acknowledged with 202, from many client tasks.
final class Acknowledged: Sendable {
    private let list = Mutex<[String]>([])
    func add(_ id: String) { list.withLock { $0.append(id) } }
    var count: Int { list.withLock { $0.count } }
    var ids: [String] { list.withLock { $0 } }
}
