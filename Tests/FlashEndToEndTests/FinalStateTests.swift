import AsyncHTTPClient
import FlashCore
import Foundation
import NIOHTTP1
import Testing

/// The four reproductions of the issue "every order reaches a true final state", run as written
/// against the real binary (kill -9 where the reproduction does), and their close variants.
@Suite("Final states of the real server", .serialized)
struct FinalStateTests {
    /// Runs `body` with an HTTP client, shutting it down afterwards.
    static func withClient(_ body: (HTTPClient) async throws -> Void) async throws {
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            try await body(http)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    static func product(_ client: APIClient, _ id: String) async throws -> (stock: Int?, reserved: Int?, sold: Int?) {
        let reply = try await client.call(.GET, "/products/\(id)")
        return (reply.int("stock"), reply.int("reserved"), reply.int("sold"))
    }

    @Test func chargedThenKilledThenDeadLetteredEndsCompletedAndIsNotResold() async throws {
        // The charge takes an hour: the kill must come while it is in progress, and the test
        // reaches it only after polling a busy server. With a few seconds' charge, a slow machine
        // let the worker finish it first: completed, its message deleted, nothing dead-lettered
        // and nothing for the restart to settle. An hour is never reached (server 1 is killed;
        // the restart charges nothing: it dead-letters the message on its next delivery).
        let flags = ["--max-receives", "1", "--payment-latency", "1h", "--visibility-timeout", "2s"]
        let data = ServerProcess.temporaryDataPath()
        try await Self.withClient { http in
            let server = try await ServerProcess(dataPath: data, arguments: flags)
            let client = APIClient(http: http, base: server.baseURL)
            #expect(try await client.call(.PUT, "/products/PS5", json: #"{"stock": 1, "price": 499}"#).status == 200)
            let placed = try await client.call(.POST, "/orders/async", json: #"{"customer_id": 5, "items": [{"product_id": "PS5"}]}"#)
            let id = try #require(placed.string("order_id"))
            // The gateway decided the charge when it arrived; the server dies during its hour.
            try await expectEventually(timeout: .seconds(60)) { try await client.stats().int("payments", "charges") == 1 }
            server.kill9()

            let restarted = try await ServerProcess(dataPath: data, arguments: flags)
            let again = APIClient(http: http, base: restarted.baseURL)
            // The lease runs out (2 s after the last heartbeat), the next delivery dead-letters the
            // message, the reconciler settles the order: events, given a generous deadline.
            try await expectEventually(timeout: .seconds(60)) {
                try await again.call(.GET, "/orders/\(id)").string("status") == "completed"
            }
            let order = try await again.call(.GET, "/orders/\(id)")
            #expect(order.string("status") == "completed")
            #expect(try await Self.product(again, "PS5") == (0, 0, 1))
            let stats = try await again.stats()
            #expect(stats.int("payments", "charges") == 1)
            #expect(stats.int("queue", "dead_letter") == 1)
            // Sold out for good: the unit is not on sale again.
            let next = try await again.call(.POST, "/orders/async", json: #"{"customer_id": 6, "items": [{"product_id": "PS5"}]}"#)
            #expect(next.status == 409)
            _ = try await restarted.terminate()
        }
    }

    @Test func syncRequestsKilledMidChargeEndSettledAndTheirKeysAnswerTheTruth() async throws {
        // The reproduction's flags, plus a gateway that takes one charge at a time, so that one
        // customer's charge is decided and the other's is still waiting when the server dies.
        // The charge takes an hour (as in the test above): the state the kill must come in, one
        // charge decided and both orders processing, then lasts until the customers' deadline,
        // not a few seconds that a slow machine could spend polling. That deadline (the sync
        // timeout) is a real duration, on purpose: a minute for the poll below to see the state,
        // and what the restarted server must wait out before it settles the orders. An hour is
        // never reached (server 1 is killed; the restart sends no charge: a replay creates nothing).
        let flags = ["--payment-latency", "1h", "--sync-timeout", "60s", "--payment-concurrency", "1", "--sync-lanes", "2"]
        let data = ServerProcess.temporaryDataPath()
        try await Self.withClient { http in
            let server = try await ServerProcess(dataPath: data, arguments: flags)
            let client = APIClient(http: http, base: server.baseURL)
            #expect(try await client.call(.PUT, "/products/TV", json: #"{"stock": 2}"#).status == 200)
            let body = #"{"customer_id": 8, "items": [{"product_id": "TV"}]}"#
            let requests = Task {
                await withTaskGroup(of: Void.self) { group in
                    for key in ["k1", "k2"] {
                        // Longer than the server's 60 s: the client does not hang up first.
                        group.addTask { _ = try? await client.call(.POST, "/orders/sync", json: body, headers: [("Idempotency-Key", key)], timeout: .seconds(120)) }
                    }
                }
            }
            try await expectEventually(timeout: .seconds(60)) {
                let stats = try await client.stats()
                return stats.int("payments", "charges") == 1 && stats.int("orders", "processing") == 2
            }
            server.kill9()
            await requests.value

            let restarted = try await ServerProcess(dataPath: data, arguments: flags)
            let again = APIClient(http: http, base: restarted.baseURL)
            // Until the dead requests' deadline passes (60 s after they arrived, and a 2 s grace),
            // a replay says the order is in progress (and creates nothing); then it answers the
            // settled order. The reconciler settles it after that: events, given a generous deadline.
            var finals: [String: String] = [:]
            let deadline = ContinuousClock.now + .seconds(180)
            while finals.count < 2, ContinuousClock.now < deadline {
                for key in ["k1", "k2"] where finals[key] == nil {
                    let reply = try await again.call(.POST, "/orders/sync", json: body, headers: [("Idempotency-Key", key)], timeout: .seconds(60))
                    if reply.status == 200, let status = reply.string("status") {
                        finals[key] = status
                    } else {
                        #expect(reply.status == 409)
                        #expect(reply.string("error", "code") == "request_in_progress")
                    }
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            // One was charged: completed and sold. The other never reached the gateway: failed, released.
            #expect(finals.values.sorted() == ["completed", "failed"])
            #expect(try await Self.product(again, "TV") == (1, 0, 1))
            let stats = try await again.stats()
            #expect(stats.int("orders", "total") == 2)
            #expect(stats.int("orders", "processing") == 0)
            #expect(stats.int("payments", "charges") == 1)
            #expect(stats.int("reconciler", "completed") == 1)
            #expect(stats.int("reconciler", "failed") == 1)
            _ = try await restarted.terminate()
        }
    }

    @Test func theCatalogsPriceIsChargedAndPurgingOrExpiringMessagesStrandsNoOrder() async throws {
        let data = ServerProcess.temporaryDataPath()
        try await Self.withClient { http in
            let server = try await ServerProcess(dataPath: data, arguments: ["--workers", "0", "--payment-latency", "50ms"])
            let client = APIClient(http: http, base: server.baseURL)
            // The client does not choose the price.
            _ = try await client.call(.PUT, "/products/CAM", json: #"{"stock": 5, "price": 250}"#)
            let cheap = #"{"customer_id": 1, "items": [{"product_id": "CAM", "price": 0.01}]}"#
            let sync = try await client.call(.POST, "/orders/sync", json: cheap)
            #expect(sync.string("status") == "completed")
            #expect(sync.json?.at(["total"])?.int == 250)
            let queued = try await client.call(.POST, "/orders/async", json: cheap)
            let queuedID = try #require(queued.string("order_id"))
            #expect(try await client.call(.GET, "/orders/\(queuedID)").json?.at(["total"])?.int == 250)

            // Three orders, no workers, then the payments queue is purged.
            _ = try await client.call(.PUT, "/products/TV", json: #"{"stock": 5, "price": 300}"#)
            var ids: [String] = []
            for n in 0..<3 {
                let reply = try await client.call(.POST, "/orders/async", json: #"{"customer_id": \#(n), "items": [{"product_id": "TV"}]}"#)
                ids.append(try #require(reply.string("order_id")))
            }
            let purge = try await client.call(.POST, "/admin/queues/payments/purge?confirm=payments")
            #expect(purge.status == 200)
            #expect(purge.int("purged") == 4)
            #expect(purge.int("orders_settled", "failed") == 4)
            for id in ids + [queuedID] {
                let order = try await client.call(.GET, "/orders/\(id)")
                #expect(order.string("status") == "failed")
                #expect(order.string("failure_reason")?.contains("no charge was made") == true)
            }
            #expect(try await Self.product(client, "TV") == (5, 0, 0))
            #expect(try await Self.product(client, "CAM") == (4, 0, 1))
            _ = try await server.terminate()

            // Retention drops a message while nobody works the queue: its order is settled too.
            let short = try await ServerProcess(dataPath: data, arguments: ["--workers", "0", "--message-retention", "1s", "--reconfigure-queue"])
            let again = APIClient(http: http, base: short.baseURL)
            let late = try await again.call(.POST, "/orders/async", json: #"{"customer_id": 9, "items": [{"product_id": "TV"}]}"#)
            let lateID = try #require(late.string("order_id"))
            #expect(try await Self.product(again, "TV").reserved == 1)
            try await expectEventually(timeout: .seconds(60)) {
                try await again.call(.GET, "/orders/\(lateID)").string("status") == "failed"
            }
            #expect(try await Self.product(again, "TV") == (5, 0, 0))
            #expect(try await again.stats().int("orders", "pending") == 0)
            _ = try await short.terminate()
        }
    }

    @Test func durationFlagsOutOfRangeAreClearErrorsNotCrashes() async throws {
        let cases: [([String], String)] = [
            (["--sync-timeout", "99999999999s"], "--sync-timeout"),
            (["--sync-timeout", "1e30s"], "--sync-timeout"),
            (["--visibility-timeout", "0.5ms"], "--visibility-timeout"),
            (["--visibility-timeout", "13h"], "--visibility-timeout"),
            (["--shutdown-deadline", "9000000000s"], "--shutdown-deadline"),
            (["--payment-latency", "exp:99999999999s"], "--payment-latency"),
            (["--message-retention", "15d"], "--message-retention"),
        ]
        for (arguments, flag) in cases {
            let (reason, status, text) = try ServerProcess.runToExit(arguments)
            #expect(reason == .exit, "\(arguments): killed by a signal")
            #expect(status != 0, "\(arguments)")
            #expect(text.contains(flag), "\(arguments): \(text)")
        }
    }
}
