import AsyncHTTPClient
import FlashCore
import FlashQueue
import FlashSQLite
import Foundation
import Testing

/// Every order id a client may send round-trips through every HTTP hop: the API's paths, and the
/// payment gateway's (`flashsale gateway`), where the void that settles a timed-out sync order
/// names the order in its path.
@Suite("Order ids through the HTTP gateway", .serialized)
struct RemoteGatewayTests {
    static let ids = ["a b", "a/b", "100%", "#1", "why?", "a+b", "café", "注文-1"]

    /// `id` with everything but letters and digits escaped, as a careful client writes a path.
    static func escaped(_ id: String) -> String {
        id.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? id
    }

    @Test func aTimedOutSyncOrderEndsAsTheGatewaysLedgerSaysWhateverItsID() async throws {
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let data = ServerProcess.temporaryDataPath()
        // A charge takes 3 s and a sync customer waits 1 s: every order reaches its deadline, and
        // the API then asks the gateway for the order's final outcome by its id in the path (a
        // void, unless the charge was decided first).
        let gateway = try await ServerProcess("gateway", dataPath: data + ".gateway", arguments: ["--latency", "3s"])
        let api = try await ServerProcess(dataPath: data, arguments: [
            "--workers", "0", "--payment-url", gateway.baseURL, "--sync-timeout", "1s", "--sync-lanes", "\(Self.ids.count)",
        ])
        let client = APIClient(http: http, base: api.baseURL)
        let gatewayClient = APIClient(http: http, base: gateway.baseURL, token: ServerProcess.gatewayToken)
        do {
            #expect(try await client.call(.PUT, "/products/TV", json: #"{"stock":\#(Self.ids.count),"price":300}"#).status == 200)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (n, id) in Self.ids.enumerated() {
                    group.addTask {
                        let body = try JSONSerialization.data(withJSONObject: [
                            "customer_id": "c\(n)", "order_id": id, "items": [["product_id": "TV"]],
                        ])
                        let reply = try await client.call(.POST, "/orders/sync", json: String(decoding: body, as: UTF8.self),
                                                          timeout: .seconds(60))
                        #expect([200, 504].contains(reply.status), "\(id): \(reply.status) \(String(describing: reply.json))")
                    }
                }
                try await group.waitForAll()
            }

            // Each order ends as the gateway's ledger has it under that very id: completed when
            // its charge succeeded, failed when it was voided; never failed beside a charge.
            for id in Self.ids {
                try await expectEventually(timeout: .seconds(60)) {
                    let status = try await client.call(.GET, "/orders/\(Self.escaped(id))").string("status")
                    return status == "completed" || status == "failed"
                }
                let order = try await client.call(.GET, "/orders/\(Self.escaped(id))")
                #expect(order.string("order_id") == id)
                let charge = try await gatewayClient.call(.GET, "/charges/\(Self.escaped(id))")
                #expect(charge.status == 200 && charge.string("order_id") == id, "\(id): \(String(describing: charge.json))")
                let expected = charge.string("status") == "succeeded" ? "completed" : "failed"
                #expect(order.string("status") == expected, "\(id): order \(String(describing: order.string("status"))), charge \(String(describing: charge.string("status")))")
            }
            // One ledger entry per order, none under another spelling of its id.
            let stats = try await gatewayClient.call(.GET, "/stats")
            #expect((stats.int("charges") ?? 0) + (stats.int("voided") ?? 0) + (stats.int("declines") ?? 0) == Self.ids.count,
                    "\(String(describing: stats.json))")
            // The units of failed orders are back on sale; the charged ones are sold.
            let product = try await client.call(.GET, "/products/TV")
            #expect(product.int("sold") == stats.int("charges"))
            #expect(product.int("stock") == Self.ids.count - (stats.int("charges") ?? 0))
            for process in [api, gateway] { _ = try? await process.terminate() }
        } catch {
            for process in [api, gateway] { process.kill9() }
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    /// A payment provider that is down for a while fails none of the orders it delays: the
    /// workers stop using up deliveries while it cannot be reached, and charge the orders once it
    /// is back (issue: a two-minute gateway outage dead-lettered and failed the orders accepted
    /// meanwhile).
    @Test func ordersAcceptedWhileTheGatewayIsDownAreChargedWhenItReturns() async throws {
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let data = ServerProcess.temporaryDataPath()
        var gateway = try await ServerProcess("gateway", dataPath: data + ".gateway", arguments: ["--latency", "20ms"])
        let gatewayPort = gateway.port
        // Two deliveries per order and a 50 ms first backoff: without the breaker, each order's
        // deliveries are spent within a second or two of outage.
        let api = try await ServerProcess(dataPath: data, arguments: [
            "--workers", "2", "--payment-url", gateway.baseURL, "--max-receives", "2", "--retry-backoff", "50ms",
        ])
        let client = APIClient(http: http, base: api.baseURL)
        @Sendable func paused() async throws -> Double? {
            let response = try await http.execute(HTTPClientRequest(url: api.baseURL + "/metrics"), timeout: .seconds(30))
            let text = String(buffer: try await response.body.collect(upTo: 1 << 22))
            return text.split(separator: "\n").first { $0.hasPrefix(#"flashsale_process_workers_paused{dependency="gateway"}"#) }
                .flatMap { Double(String($0.split(separator: " ").last ?? "")) }
        }
        do {
            gateway.kill9()
            var ids: [String] = []
            for n in 0..<5 {
                let reply = try await client.call(.POST, "/orders/async", json: #"{"customer_id":\#(n),"items":[{"product_id":"P","price":5}]}"#)
                #expect(reply.status == 202)
                ids.append(try #require(reply.string("order_id")))
            }
            // The workers found the gateway away and stopped.
            try await expectEventually { try await paused() == 1 }
            // The outage goes on: orders stay open, none dead-lettered.
            try await Task.sleep(for: .seconds(3))
            for id in ids {
                let status = try await client.call(.GET, "/orders/\(id)").string("status")
                #expect(status == "pending" || status == "processing", "\(id): \(String(describing: status))")
            }
            #expect(try await client.stats().int("queue", "dead_letter") == 0)
            // The gateway is back, at its address: every order is charged once, none failed.
            gateway = try await ServerProcess("gateway", dataPath: data + ".gateway", arguments: ["--latency", "20ms", "--port", "\(gatewayPort)"])
            for id in ids {
                try await expectEventually { try await client.call(.GET, "/orders/\(id)").string("status") == "completed" }
            }
            try await expectEventually { try await paused() == 0 }
            #expect(try await APIClient(http: http, base: gateway.baseURL, token: ServerProcess.gatewayToken).call(.GET, "/stats").int("charges") == ids.count)
            for process in [api, gateway] { _ = try? await process.terminate() }
            // The gateway's file is its own store: its ledger, kept across the kill, and no
            // order backend (no queue was ever made in it).
            let file = try SQLiteDatabase(path: data + ".gateway")
            #expect(try await SQLitePaymentLedger(database: file).entries().count == ids.count)
            for queue in ["payments", "payments-dlq", "outbox"] {
                await #expect(throws: QueueError.self) { try await file.queue(named: queue) }
            }
            try file.close()
        } catch {
            for process in [api, gateway] { process.kill9() }
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}
