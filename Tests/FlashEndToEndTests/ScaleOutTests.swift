import AsyncHTTPClient
import FlashBackend
import FlashCore
import Foundation
import NIOHTTP1
import Synchronization
import Testing

/// The scale-out proof (README, "Many machines: PostgreSQL"): two API processes, three worker
/// processes and one `flashsale gateway` on one PostgreSQL. Runs when the test command started a
/// throwaway PostgreSQL (`FLASHSALE_TEST_POSTGRES`, `FLASHSALE_TEST_POSTGRES_DIR`).
@Suite("Scale-out on PostgreSQL", .serialized, .enabled(if: TestPostgresServer.url != nil && TestPostgresServer.dir != nil))
struct ScaleOutTests {
    static var postgresURL: String? { TestPostgresServer.url }
    static var postgresDir: String? { TestPostgresServer.dir }

    /// `scripts/postgres-server ACTION DIR` on the test server.
    static func postgres(_ action: String) async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let script = root.appendingPathComponent("scripts/postgres-server").path
        let arguments = [script, action, try #require(postgresDir)]
        // posix_spawn and a polled waitpid: Foundation's Process did not always notice this
        // script's exit here (it starts a daemon), and waitUntilExit would block a pool thread.
        var pid: pid_t = 0
        let argv = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let spawned = posix_spawn(&pid, script, nil, nil, argv, environ)
        #expect(spawned == 0, "spawn postgres-server: \(spawned)")
        guard spawned == 0 else { return }
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 { try await Task.sleep(for: .milliseconds(50)) }
        #expect(status == 0, "postgres-server \(action) exited with \(status)")
    }

    /// A line on standard error, so a slow run shows how far it got.
    static func progress(_ text: String) {
        FileHandle.standardError.write(Data("ScaleOutTests: \(text)\n".utf8))
    }

    static func stats(_ client: APIClient) async throws -> SystemStats {
        let response = try await client.http.execute(HTTPClientRequest(url: client.base + "/stats"), timeout: .seconds(60))
        let body = try await response.body.collect(upTo: 1 << 20)
        return try JSONDecoder().decode(SystemStats.self, from: Data(body.readableBytesView))
    }

    @Test func twoAPIsThreeWorkersAndAGatewayChargeEveryOrderOnceThroughKill9AndADatabaseRestart() async throws {
        let schema = "scale_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let database = try #require(Self.postgresURL) + "?schema=\(schema)"
        let files = ServerProcess.temporaryDataPath()
        // A connection for each of the 32 senders, and a generous connect timeout (also how long a
        // request may wait for a pooled connection): during the database restart a request can
        // take seconds, and with the default 8 connections the others queued behind it.
        let http = FleetTests.httpClient()
        var started: [ServerProcess] = []
        do {
            let gateway = try await ServerProcess("gateway", dataPath: files + ".gateway", arguments: ["--latency", "20ms"])
            started.append(gateway)
            // One lease for the fleet: the queue's settings are stored once, and a process given
            // others refuses to start.
            let shared = ["--database", database, "--payment-url", gateway.baseURL, "--visibility-timeout", "2s"]
            let apis = [try await ServerProcess(dataPath: files, arguments: shared + ["--workers", "0"]),
                        try await ServerProcess(dataPath: files, arguments: shared + ["--workers", "0"])]
            started += apis
            let workerArguments = shared + ["--workers", "12"]
            var workers: [ServerProcess] = []
            for _ in 0..<3 { workers.append(try await ServerProcess("worker", dataPath: files, arguments: workerArguments)) }
            started += workers
            let clients = apis.map { APIClient(http: http, base: $0.baseURL) }
            let gatewayClient = APIClient(http: http, base: gateway.baseURL, token: ServerProcess.gatewayToken)
            try await expectEventually(timeout: .seconds(60)) {
                try await Self.stats(clients[0]).processes.filter { $0.kind == .worker }.count == 3
            }

            // 5,000 async orders across both APIs from 32 clients, each with its idempotency key:
            // a 503 (the database restarting) is retried with the same key, as a client should.
            // One worker is killed with kill -9 mid-run; PostgreSQL restarts once mid-run.
            let total = 5_000
            let accepted = Acknowledged()
            let sending = Sending()
            let unavailable = Tally()
            let victim = workers[0]
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<32 {
                    group.addTask {
                        while true {
                            let n = sending.next.add(1, ordering: .relaxed).oldValue
                            guard n < total else { return }
                            let client = clients[n % 2]
                            while true {
                                let reply = try await client.call(.POST, "/orders/async",
                                                                  json: #"{"customer_id":"c\#(n)","items":[{"product_id":"PROD-001","quantity":1,"price":10}]}"#,
                                                                  headers: [("Idempotency-Key", "order-\(n)")])
                                if reply.status == 202 || reply.status == 200, let id = reply.string("order_id") {
                                    accepted.add(id)
                                    break
                                }
                                guard reply.status == 503 else {
                                    sending.refused.withLock { $0.append(reply.status) }
                                    break
                                }
                                #expect(reply.headers.first(name: "Retry-After") != nil)
                                unavailable.add()
                                try await Task.sleep(for: .milliseconds(100))
                            }
                        }
                    }
                }
                group.addTask {
                    // A failed read (a 503, or slow on a busy machine) is read again; a generous
                    // deadline instead of a wait forever.
                    let deadline = ContinuousClock.now + .seconds(300)
                    while ((try? await Self.stats(clients[0]))?.orders.completed ?? 0) < 1_000 {
                        guard ContinuousClock.now < deadline else {
                            Issue.record("1,000 orders were not completed within 300 s; the worker is killed now")
                            break
                        }
                        try await Task.sleep(for: .milliseconds(20))
                    }
                    victim.kill9()
                    while sending.next.load(ordering: .relaxed) < 2_500 { try await Task.sleep(for: .milliseconds(10)) }
                    try await Self.postgres("restart")
                    Self.progress("PostgreSQL restarted")
                }
                try await group.waitForAll()
            }
            Self.progress("sent \(accepted.count) orders; \(unavailable.value) answers were 503")
            #expect(sending.refused.withLock { $0 }.isEmpty, "refused: \(sending.refused.withLock { $0.prefix(5) })")
            #expect(Set(accepted.ids).count == total, "every order acknowledged once")

            let replacement = try await ServerProcess("worker", dataPath: files, arguments: workerArguments)
            started.append(replacement)
            Self.progress("replacement worker started")

            // Every acknowledged order completes, charged exactly once at the gateway.
            try await expectEventually(timeout: .seconds(120)) { try await Self.stats(clients[1]).orders.completed == total }
            // Read until it decodes (not a 503), and until the queue is drained too: a message
            // redelivered when a late heartbeat let its 2 s lease run out may still be in flight a
            // moment after its order completed.
            let final = try await FleetTests.stats(clients[0], within: .seconds(60)) {
                $0.orders.completed == total && $0.queue.visible == 0 && $0.queue.inFlight == 0
            }
            #expect(final.orders == SystemStats.Orders(total: total, pending: 0, processing: 0, completed: total, failed: 0))
            #expect(final.queue.visible == 0 && final.queue.inFlight == 0 && final.queue.deadLetter == 0)
            var gatewayStats = try await gatewayClient.call(.GET, "/stats")
            #expect(gatewayStats.int("charges") == total, "one charge per order: \(String(describing: gatewayStats.json))")
            for id in accepted.ids.shuffled().prefix(50) {
                #expect(try await clients[1].call(.GET, "/orders/\(id)").string("status") == "completed")
                #expect(try await gatewayClient.call(.GET, "/charges/\(id)").string("status") == "succeeded")
            }

            Self.progress("every order completed")
            // A /buy storm of 2,000 across both APIs on 100 units sells exactly 100.
            #expect(try await clients[0].call(.PUT, "/products/iphone_16", json: #"{"stock":100,"price":999}"#).status == 200)
            let sold = Tally()
            let soldOut = Tally()
            let buyer = Tally()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<32 {
                    group.addTask {
                        while true {
                            let n = buyer.add() - 1
                            guard n < 2_000 else { return }
                            var reply = try await clients[n % 2].call(.POST, "/buy", json: #"{"customer_id":"buyer-\#(n)"}"#,
                                                                      headers: [("Idempotency-Key", "buy-\(n)")])
                            while reply.status == 503 {
                                try await Task.sleep(for: .milliseconds(100))
                                reply = try await clients[n % 2].call(.POST, "/buy", json: #"{"customer_id":"buyer-\#(n)"}"#,
                                                                  headers: [("Idempotency-Key", "buy-\(n)")])
                            }
                            // The seed's answers: 200 "Order Queued...", 400 "Fail: Sold Out".
                            if reply.status == 200 { sold.add() } else if reply.status == 400, reply.string("error", "code") == "sold_out" { soldOut.add() }
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(sold.value == 100)
            #expect(soldOut.value == 1_900)
            try await expectEventually(timeout: .seconds(60)) { try await Self.stats(clients[0]).orders.completed == total + 100 }
            let product = try await clients[1].call(.GET, "/products/iphone_16")
            #expect(product.int("sold") == 100 && product.int("stock") == 0 && product.int("reserved") == 0)
            gatewayStats = try await gatewayClient.call(.GET, "/stats")
            #expect(gatewayStats.int("charges") == total + 100)

            for process in started.reversed() where process !== victim { _ = try? await process.terminate() }
        } catch {
            for process in started where !process.process.hasEnded { process.kill9() }
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}

/// The throwaway PostgreSQL the test command started, if any.
enum TestPostgresServer {
    static let url = ProcessInfo.processInfo.environment["FLASHSALE_TEST_POSTGRES"]
    static let dir = ProcessInfo.processInfo.environment["FLASHSALE_TEST_POSTGRES_DIR"]
}

/// A counter shared by concurrent tasks.
final class Tally: Sendable {
    private let count = Atomic<Int>(0)
    /// Adds one; returns the new value.
    @discardableResult
    func add() -> Int { count.add(1, ordering: .relaxed).newValue }
    var value: Int { count.load(ordering: .relaxed) }
}
