import FlashCore
import FlashFaults
import FlashOrders
import FlashServer
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing
@testable import FlashAPI
import Foundation

@Suite("Inventory gate and flash-sale routes")
struct InventoryRoutesTests {
    func order(customer: String, _ items: [(String, Int)]) -> String {
        let list = items.map { #"{"product_id": "\#($0.0)", "quantity": \#($0.1)}"# }.joined(separator: ",")
        return #"{"customer_id": "\#(customer)", "items": [\#(list)]}"#
    }

    @Test func productsAreStockedAndRead() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { _, client in
            let put = try await client.call(.put, "/products/SKU-1", json: #"{"stock": 100, "per_customer_limit": 1, "price": 999.0}"#)
            #expect(put.status == .ok)
            let get = try await client.call(.get, "/products/SKU-1")
            #expect(get.string("product_id") == "SKU-1")
            #expect(get.int("stock") == 100)
            #expect(get.int("reserved") == 0)
            #expect(get.int("sold") == 0)
            #expect(get.int("per_customer_limit") == 1)
            #expect(get["price"] == .number(999, integer: 999))
            #expect(try await client.call(.get, "/products/nope").status == .notFound)
        }
    }

    @Test func theCatalogIsListedInIdOrder() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { _, client in
            #expect(try await client.call(.get, "/products").json?["products"] == .array([]))
            for id in ["b", "c", "a"] { _ = try await client.call(.put, "/products/\(id)", json: #"{"stock": 5}"#) }
            let all = try await client.call(.get, "/products")
            #expect(all.status == .ok)
            #expect(all.json?["products"]?.array?.compactMap { $0["product_id"]?.string } == ["a", "b", "c"])
            #expect(all.json?["products"]?.array?.first?["stock"]?.int == 5)
            let two = try await client.call(.get, "/products?limit=2")
            #expect(two.json?["products"]?.array?.count == 2)
            for wrong in ["0", "1001", "x"] {
                let refused = try await client.call(.get, "/products?limit=\(wrong)")
                #expect(refused.status == .badRequest)
                #expect(refused.errorCode == "invalid_limit")
            }
        }
    }

    @Test func badProductInputIsRefusedAndChangesNothing() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { _, client in
            _ = try await client.call(.put, "/products/SKU-1", json: #"{"stock": 5}"#)
            for body in [#"{"stock": -1}"#, #"{"stock": 1.5}"#, #"{"stock": "10"}"#, #"{"stock": 1e300}"#,
                         #"{"stock": 99999999999999999999}"#, #"{"price": 3}"#, "{oops", #"{"stock": 1, "per_customer_limit": 0}"#,
                         #"{"stock": 1, "price": -5}"#] {
                let reply = try await client.call(.put, "/products/SKU-1", json: body)
                #expect(reply.status == .badRequest, "\(body)")
                #expect(reply.errorCode != nil, "\(body)")
            }
            #expect(try await client.call(.get, "/products/SKU-1").int("stock") == 5)
        }
    }

    @Test func ordersReserveStockAllOrNothing() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { _, client in
            _ = try await client.call(.put, "/products/A", json: #"{"stock": 3, "price": 10}"#)
            _ = try await client.call(.put, "/products/B", json: #"{"stock": 1}"#)
            let first = try await client.call(.post, "/orders/async", json: order(customer: "1", [("A", 2)]))
            #expect(first.status == .accepted)
            // A has 1 left: an order for 2 more is refused with nothing stored.
            let soldOut = try await client.call(.post, "/orders/async", json: order(customer: "2", [("A", 2)]))
            #expect(soldOut.status == .conflict)
            #expect(soldOut.errorCode == "sold_out")
            // All or nothing: A is available, B is not, so neither is reserved.
            let mixed = try await client.call(.post, "/orders/async", json: order(customer: "3", [("A", 1), ("B", 2)]))
            #expect(mixed.errorCode == "sold_out")
            let a = try await client.call(.get, "/products/A")
            #expect(a.int("stock") == 1)
            #expect(a.int("reserved") == 2)
            #expect(try await client.call(.get, "/products/B").int("stock") == 1)
            // Unknown products are not stock-limited.
            #expect(try await client.call(.post, "/orders/async", json: order(customer: "4", [("FREE", 500)])).status == .accepted)
            let stats = try await client.call(.get, "/stats")
            #expect(stats.int("orders", "total") == 2)
            #expect(stats.int("queue", "visible") == 2)
            // The catalog price is used for items sent without one.
            let stored = try await client.call(.get, "/orders/\(first.string("order_id")!)")
            #expect(stored["total"] == .number(20, integer: 20))
        }
    }

    @Test func perCustomerLimitsAreEnforced() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { _, client in
            _ = try await client.call(.put, "/products/PS5", json: #"{"stock": 10, "per_customer_limit": 2}"#)
            #expect(try await client.call(.post, "/orders/async", json: order(customer: "alice", [("PS5", 2)])).status == .accepted)
            let again = try await client.call(.post, "/orders/async", json: order(customer: "alice", [("PS5", 1)]))
            #expect(again.status == .conflict)
            #expect(again.errorCode == "limit_exceeded")
            #expect(try await client.call(.post, "/orders/sync", json: order(customer: "alice", [("PS5", 1)])).errorCode == "limit_exceeded")
            #expect(try await client.call(.post, "/orders/async", json: order(customer: "bob", [("PS5", 2)])).status == .accepted)
            #expect(try await client.call(.get, "/products/PS5").int("stock") == 6)
        }
    }

    @Test func strictCatalogRefusesUnknownProducts() async throws {
        var config = TestSystem.configuration()
        config.backend.strictCatalog = true
        try await TestSystem.withLiveSystem(config) { _, client in
            let reply = try await client.call(.post, "/orders/async", json: order(customer: "1", [("GHOST", 1)]))
            #expect(reply.status == .conflict)
            #expect(reply.errorCode == "unknown_product")
        }
    }

    @Test func paidUnitsAreSoldAndDeclinedUnitsComeBack() async throws {
        var config = TestSystem.configuration(workers: 4)
        config.payment.declineRate = 1
        try await TestSystem.withLiveSystem(config) { system, client in
            _ = try await client.call(.put, "/products/X", json: #"{"stock": 2, "per_customer_limit": 1}"#)
            let id = try #require(try await client.call(.post, "/orders/async", json: order(customer: "c", [("X", 1)])).string("order_id"))
            try await expectEventually { try await client.call(.get, "/orders/\(id)").string("status") == "failed" }
            let product = try await client.call(.get, "/products/X")
            #expect(product.int("stock") == 2)
            #expect(product.int("reserved") == 0)
            #expect(product.int("sold") == 0)
            // The declined unit no longer counts against the customer's limit.
            #expect(try await client.call(.post, "/orders/async", json: order(customer: "c", [("X", 1)])).status == .accepted)
        }
        var paying = TestSystem.configuration(workers: 4)
        paying.payment.latency = .fixed(.milliseconds(1))
        try await TestSystem.withLiveSystem(paying) { _, client in
            _ = try await client.call(.put, "/products/X", json: #"{"stock": 2}"#)
            _ = try await client.call(.post, "/orders/async", json: order(customer: "c", [("X", 2)]))
            try await expectEventually { try await client.call(.get, "/products/X").int("sold") == 2 }
            let product = try await client.call(.get, "/products/X")
            #expect(product.int("stock") == 0)
            #expect(product.int("reserved") == 0)
        }
    }

    @Test func theSeedEnginesAPIWorksUnchanged() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { _, client in
            // No stock key yet: sold out, not a 500.
            #expect(try await client.call(.get, "/stock").int("stock") == 0)
            let none = try await client.call(.post, "/buy", json: #"{"userId": 1}"#)
            #expect(none.status == .badRequest)
            #expect(none.errorCode == "sold_out")
            #expect(none.string("error", "message") == "Fail: Sold Out")
            for bad in ["abc", "0", "-3", "1.5", "99999999999999"] {
                #expect(try await client.call(.post, "/reset-stock/\(bad)").status == .badRequest, "\(bad)")
            }
            let reset = try await client.call(.post, "/reset-stock/2")
            #expect(reset.status == .ok)
            #expect(reset.int("stock") == 2)
            let bought = try await client.call(.post, "/buy", json: #"{"userId": "u-1"}"#)
            #expect(bought.status == .ok)
            #expect(bought.string("status") == "pending")
            #expect(bought.string("message") == "Order Queued...")
            #expect(bought.string("order_id") != nil)
            #expect(try await client.call(.post, "/buy").status == .ok)
            #expect(try await client.call(.post, "/buy", json: #"{"userId": 3}"#).errorCode == "sold_out")
            #expect(try await client.call(.get, "/stock").int("stock") == 0)
            #expect(try await client.call(.post, "/buy", json: #"{"userId": true}"#).status == .badRequest)
            #expect(try await client.call(.post, "/buy", json: "{nope").errorCode == "invalid_json")
            #expect(try await client.call(.get, "/stats").int("orders", "total") == 2)
        }
    }

    @Test func concurrentBuyersNeverOversellAndTheInvariantHolds() async throws {
        var config = TestSystem.configuration(workers: 8, latency: .milliseconds(2))
        config.payment.declineRate = 0.3
        try await TestSystem.withLiveSystem(config) { system, client in
            _ = try await client.call(.post, "/reset-stock/50")
            _ = try await client.call(.put, "/products/GADGET", json: #"{"stock": 20, "per_customer_limit": 3}"#)
            let outcomes = StatusTally()
            // 400 buyers, 8 at a time. The test client (HummingbirdTesting's AsyncHTTPClient)
            // keeps at most 8 connections to the server (the client's default), so the server
            // never had more than 8 requests at once even when all 400 buyers started together:
            // the rest queued inside the client, each against a fixed 10 s wall-clock allowance
            // for getting a connection (the client's connect timeout, which the test framework
            // does not let a test set) and failed with getConnectionFromPoolTimeout whenever the
            // whole burst took longer than that on a slow machine. With as many buyers in flight
            // as there are connections the server sees the same concurrency, and no request waits
            // behind the others: each has the client's 10 s (15 s in all) for itself alone, a
            // generous allowance for one request on any machine.
            let connections = 8, buyers = 400
            try await withThrowingTaskGroup(of: Void.self) { group in
                for first in 0..<connections {
                    group.addTask {
                        for n in stride(from: first, to: buyers, by: connections) {
                            let body = #"{"customer_id": "c\#(n % 7)", "items": [{"product_id": "GADGET"}, {"product_id": "iphone_16"}]}"#
                            let reply = n % 4 == 0
                                ? try await client.call(.post, "/orders/async", json: body)
                                : try await client.call(.post, "/buy", json: #"{"userId": \#(n)}"#)
                            outcomes.add(reply.status.code)
                            // The invariant holds at every moment, not only at the end.
                            let product = try await client.call(.get, "/products/iphone_16")
                            let parts = [product.int("stock"), product.int("reserved"), product.int("sold")].compactMap { $0 }
                            #expect(parts.count == 3 && parts.allSatisfy { $0 >= 0 })
                        }
                    }
                }
                try await group.waitForAll()
            }
            // Every buyer was answered, so the counts below cover all 400.
            #expect((100..<600).reduce(0) { $0 + outcomes.count($1) } == buyers)
            // The workers then finish what was still queued when the last buyer was answered.
            // Polled, so it returns as soon as they have; the allowance only bounds a pool that
            // never finishes, hence generous (a starved machine may take seconds over it).
            try await expectEventually(timeout: .seconds(120)) {
                let stats = try await client.call(.get, "/stats")
                return stats.int("orders", "pending") == 0 && stats.int("orders", "processing") == 0
            }
            for (id, stocked) in [("iphone_16", 50), ("GADGET", 20)] {
                let product = try await client.call(.get, "/products/\(id)")
                let stock = try #require(product.int("stock")), reserved = try #require(product.int("reserved")), sold = try #require(product.int("sold"))
                #expect(stock + reserved + sold == stocked, "\(id)")
                #expect(reserved == 0)
            }
            let stats = try await client.call(.get, "/stats")
            let sold = try await client.call(.get, "/products/iphone_16").int("sold")
            #expect(stats.int("orders", "completed") == sold)
            #expect(stats.int("payments", "charges") == sold)
            let accepted = outcomes.count(200) + outcomes.count(202)
            #expect(stats.int("orders", "total") == accepted)
        }
    }

    @Test func adminRoutesNeedTheSecretEvenFromLoopback() async throws {
        var config = TestSystem.configuration()
        config.api.adminToken = "s3cret"
        // The client is on loopback, as every client behind a proxy on the same host would be.
        try await TestSystem.withLiveSystem(config) { _, client in
            let none = try await client.call(.post, "/reset-stock/5", authorized: false)
            #expect(none.status == .unauthorized)
            #expect(none.errorCode == "unauthorized")
            let wrong = try await client.call(.post, "/reset-stock/5", headers: [.authorization: "Bearer nope"])
            #expect(wrong.status == .forbidden)
            #expect(try await client.call(.put, "/products/A", json: #"{"stock": 1}"#, authorized: false).status == .unauthorized)
            #expect(try await client.call(.post, "/admin/queues/payments/purge", authorized: false).status == .unauthorized)
            #expect(try await client.call(.get, "/stock").int("stock") == 0)
            let right = try await client.call(.post, "/reset-stock/5", headers: [.authorization: "Bearer s3cret"])
            #expect(right.status == .ok)
            #expect(try await client.call(.get, "/stock").int("stock") == 5)
        }
    }

    @Test func purgeEmptiesAQueue() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { _, client in
            _ = try await client.call(.post, "/orders/async", json: seedOrder)
            // Unconfirmed, or confirmed for another queue: refused, saying what it would delete.
            for path in ["/admin/queues/payments/purge", "/admin/queues/payments/purge?confirm=payments-dlq"] {
                let unconfirmed = try await client.call(.post, path)
                #expect(unconfirmed.status == .conflict)
                #expect(unconfirmed.errorCode == "confirmation_required")
                #expect(unconfirmed.string("error", "message")?.contains("deletes its 1 messages") == true)
                #expect(unconfirmed.string("error", "message")?.contains("?confirm=payments") == true)
            }
            #expect(try await client.call(.get, "/stats").int("queue", "visible") == 1)
            let purged = try await client.call(.post, "/admin/queues/payments/purge?confirm=payments")
            #expect(purged.status == .ok)
            #expect(purged.int("purged") == 1)
            #expect(try await client.call(.get, "/stats").int("queue", "visible") == 0)
            #expect(try await client.call(.post, "/admin/queues/nope/purge").status == .notFound)
        }
    }

    @Test func queuesShowTheirSettingsAndTheFleetsPauseSwitch() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { _, client in
            _ = try await client.call(.post, "/orders/async", json: seedOrder)
            let queues = try await client.call(.get, "/queues", authorized: false)
            #expect(queues.status == .ok)
            let payments = try #require(queues.json?["queues"]?.array?.first)
            #expect(payments["name"]?.string == "payments")
            #expect(payments["role"]?.string == "payments")
            #expect(payments["settings"]?["visibility_timeout_seconds"]?.int == 30)
            #expect(payments["settings"]?["max_receives"]?.int == 5)
            #expect(payments["settings"]?["retention_seconds"]?.int == 4 * 86_400)
            #expect(payments["paused"] == .bool(false))
            #expect(payments["visible"]?.int == 1)
            #expect(queues.json?["queues"]?.array?.last?["role"]?.string == "dead_letter")

            #expect(try await client.call(.post, "/admin/queues/payments/pause", authorized: false).status == .unauthorized)
            #expect(try await client.call(.post, "/admin/queues/payments-dlq/pause").status == .conflict)
            #expect(try await client.call(.post, "/admin/queues/nope/pause").status == .notFound)
            let paused = try await client.call(.post, "/admin/queues/payments/pause")
            #expect(paused.status == .ok)
            #expect(paused["paused"] == .bool(true))
            #expect(paused.string("by")?.contains("request") == true)
            #expect(try await client.call(.get, "/stats")["queue", "paused"] == .bool(true))
            let after = try await client.call(.get, "/queues")
            #expect(after.json?["queues"]?.array?.first?["paused"] == .bool(true))
            #expect(after.json?["queues"]?.array?.first?["paused_by"]?.string == paused.string("by"))
            #expect(try await client.call(.post, "/admin/queues/payments/resume").status == .ok)
            #expect(try await client.call(.get, "/stats")["queue", "paused"] == .bool(false))
        }
    }

    @Test func withNoSecretConfiguredOneIsGeneratedOwnerOnlySharedAndAFileOthersCanReadIsRefused() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flashsale-secret-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let data = directory.appendingPathComponent("flashsale.db").path
        let first = try AdminSecret.resolve(token: nil, file: nil, dataPath: data)
        let file = AdminSecret.defaultFile(forData: data)
        #expect(first.source.contains(file) && first.source.contains("generated"))
        #expect(first.token.count >= 32)
        let attributes = try FileManager.default.attributesOfItem(atPath: file)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        // Another process on the same file reads the same secret; a given one wins.
        #expect(try AdminSecret.resolve(token: nil, file: nil, dataPath: data).token == first.token)
        #expect(try AdminSecret.resolve(token: "given", file: file, dataPath: data).token == "given")
        #expect(try AdminSecret.resolve(token: nil, file: file, dataPath: "/elsewhere/x.db").token == first.token)
        chmod(file, 0o644)
        #expect(throws: SecretFileError.self) { try AdminSecret.resolve(token: nil, file: nil, dataPath: data) }
    }

    @Test func aSoldOutProductIsRefusedWithoutTheStoreUntilARestockAndRepeatsStillReachTheirOrders() async throws {
        var config = TestSystem.configuration()
        config.api.admissionDeadline = .milliseconds(300)
        let path = config.backend.path
        try await TestSystem.withServices(config, adjust: { services in
            // Remembered for the whole test, so that no timing decides what it sees.
            services.soldOut = SoldOutMemory(bound: .seconds(3600))
        }) { _, _, client in
            #expect(try await client.call(.post, "/reset-stock/1").status == .ok)
            let keyed: HTTPFields = [HTTPField.Name("Idempotency-Key")!: "k-1"]
            #expect(try await client.call(.post, "/buy", json: #"{"userId": 1}"#, headers: keyed).status == .ok)
            // Refused by the store: one unit asked, none left.
            #expect(try await client.call(.post, "/buy", json: #"{"userId": 2}"#).errorCode == "sold_out")
            // The file is locked (another process's long write): the store cannot answer at all
            // (its requests are refused at the admission deadline), but "sold out" still is.
            let lock = try await SQLiteLockHolder(path: path)
            let refused = try await client.call(.post, "/buy", json: #"{"userId": 3}"#)
            #expect(refused.status == .badRequest)
            #expect(refused.errorCode == "sold_out")
            let async = try await client.call(.post, "/orders/async", json: #"{"customer_id": 4, "items": [{"product_id": "iphone_16"}]}"#)
            #expect(async.status == .conflict)
            #expect(async.errorCode == "sold_out")
            let sync = try await client.call(.post, "/orders/sync", json: #"{"customer_id": 5, "items": [{"product_id": "iphone_16"}]}"#)
            #expect(sync.errorCode == "sold_out")
            // A repeat of the sale goes to the store (which returns its order, once it can answer).
            #expect(try await client.call(.post, "/buy", json: #"{"userId": 1}"#, headers: keyed).errorCode == "overloaded")
            lock.release()
            #expect(try await client.call(.post, "/buy", json: #"{"userId": 1}"#, headers: keyed).status == .ok)
            // A restock through this process is seen at once.
            #expect(try await client.call(.post, "/reset-stock/2").status == .ok)
            #expect(try await client.call(.post, "/buy", json: #"{"userId": 6}"#).status == .ok)
            // Two units refused when one is left says nothing of one unit: not remembered.
            #expect(try await client.call(.post, "/orders/async", json: #"{"customer_id": 7, "items": [{"product_id": "iphone_16", "quantity": 2}]}"#)
                .errorCode == "sold_out")
            #expect(try await client.call(.post, "/buy", json: #"{"userId": 8}"#).status == .ok)
            #expect(try await client.call(.get, "/stock").int("stock") == 0)
        }
    }

    @Test func soldOutIsRememberedOnlyWhenOneUnitInAllWasRefused() {
        let memory = SoldOutMemory(bound: .seconds(3600))
        func order(_ items: [(String, Int)]) -> NewOrder {
            NewOrder(id: "x", customerID: "c", items: items.map { OrderItem(productID: $0.0, quantity: $0.1, price: nil) },
                     channel: .async, idempotencyKey: nil, idChosenByClient: false)
        }
        // Two lines of one unit each ask for two: refused with one left says nothing of one unit.
        memory.remember(.soldOut(productID: "A"), for: order([("A", 1), ("A", 1)]), since: memory.generation)
        #expect(memory.refusal(for: order([("A", 1)])) == nil)
        memory.remember(.soldOut(productID: "A"), for: order([("A", 1), ("B", 3)]), since: memory.generation)
        #expect(memory.refusal(for: order([("A", 1)])) == .soldOut(productID: "A"))
        // A restock after the store was asked: that answer is not remembered.
        let asked = memory.generation
        memory.forget("A")
        memory.remember(.soldOut(productID: "A"), for: order([("A", 1)]), since: asked)
        #expect(memory.refusal(for: order([("A", 1)])) == nil)
        // A repeat (a client's key or order id) is never refused from memory.
        memory.remember(.soldOut(productID: "A"), for: order([("A", 1)]), since: memory.generation)
        var keyed = order([("A", 1)])
        keyed.idempotencyKey = "k"
        #expect(memory.refusal(for: keyed) == nil)
    }
}
