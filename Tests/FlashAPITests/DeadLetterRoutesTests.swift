import FlashCore
import FlashOrders
import FlashServer
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
@testable import FlashAPI

@Suite("Dead-letter routes")
struct DeadLetterRoutesTests {
    /// Places `count` async orders and dead-letters their messages (each delivered once and
    /// abandoned; the next receive moves it), then waits until the dead-letter handler has found
    /// `open` of them (it marks them, and their hold starts); returns the order ids.
    static func deadLettered(_ count: Int, open: Int, system: FlashSystem, client: any TestClientProtocol) async throws -> [String] {
        var ids: [String] = []
        for n in 0..<count {
            let placed = try await client.call(.post, "/orders/async", json: #"{"customer_id": "dl-\#(n)", "items": [{"product_id": "P", "quantity": 1, "price": 5}]}"#)
            ids.append(try #require(placed.string("order_id")))
        }
        for _ in 0..<10 {
            let got = try await system.paymentsQueue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .zero)
            if got.isEmpty { break }
            _ = try await system.store.startProcessing(got.compactMap { PaymentMessage.orderID(in: $0.body) })
        }
        try await expectEventually(timeout: .seconds(60)) {
            try await client.call(.get, "/admin/dead-letters?state=open").json?["dead_letters"]?.array?.count == open
        }
        return ids
    }

    static func config() -> FlashConfiguration {
        var config = TestSystem.configuration()
        config.queue.maxReceives = 1
        config.queue.deadLetterHold = .seconds(3600)
        return config
    }

    @Test func deadLettersAreListedWithTheirOrdersAndRetriedOrSettledOneByOne() async throws {
        try await TestSystem.withLiveSystem(Self.config()) { system, client in
            let ids = try await Self.deadLettered(2, open: 2, system: system, client: client)
            #expect(try await client.call(.get, "/admin/dead-letters", authorized: false).status == .unauthorized)
            let list = try await client.call(.get, "/admin/dead-letters")
            #expect(list.status == .ok)
            #expect(list.string("queue") == "payments-dlq")
            #expect(list.int("hold_seconds") == 3600)
            #expect(list.int("total") == 2)
            let letters = try #require(list.json?["dead_letters"]?.array)
            #expect(Set(letters.compactMap { $0["order_id"]?.string }) == Set(ids))
            for letter in letters {
                #expect(letter["order"]?["status"]?.string == "processing")
                #expect((letter["receive_count"]?.int ?? 0) >= 1)
                #expect(letter["held_until"]?.int != nil)
            }
            let message = { (order: String) in letters.first { $0["order_id"]?.string == order }?["message_id"]?.string ?? "" }
            // Retry one: back in the payments queue, its order pending again.
            let redriven = try await client.call(.post, "/admin/dead-letters/\(message(ids[0]))/redrive")
            #expect(redriven.status == .ok)
            #expect(redriven.string("order", "status") == "pending")
            #expect(try await client.call(.get, "/stats").int("queue", "visible") == 1)
            let again = try await client.call(.post, "/admin/dead-letters/\(message(ids[0]))/redrive")
            #expect(again.status == .notFound)
            // Settle one now: never charged, so failed, and a redrive of it is refused.
            let settled = try await client.call(.post, "/admin/dead-letters/\(message(ids[1]))/settle")
            #expect(settled.status == .ok)
            #expect(settled["settled"] == .bool(true))
            #expect(settled.string("order", "status") == "failed")
            #expect(settled.string("order", "failure_reason")?.contains("settled by an operator") == true)
            let refused = try await client.call(.post, "/admin/dead-letters/\(message(ids[1]))/redrive")
            #expect(refused.status == .conflict)
            #expect(refused.errorCode == "order_final")
            let after = try await client.call(.get, "/admin/dead-letters")
            #expect(after.json?["dead_letters"]?.array?.map { $0["order_id"]?.string } == [ids[1]])
            #expect(after.json?["dead_letters"]?.array?.first?["held_until"] == .null)
            for wrong in ["0", "1001", "x"] {
                #expect(try await client.call(.get, "/admin/dead-letters?limit=\(wrong)").errorCode == "invalid_limit")
            }
            #expect(try await client.call(.get, "/admin/dead-letters?state=closed").errorCode == "invalid_state")
            #expect(try await client.call(.get, "/admin/dead-letters?state=open").json?["dead_letters"]?.array?.isEmpty == true)
            #expect(try await client.call(.post, "/admin/dead-letters/nope/settle").status == .notFound)

            // The settled order's history: dead-lettered (the handler saw it), then failed by the operator.
            let history = try await client.call(.get, "/admin/orders/\(ids[1])/history")
            #expect(history.status == .ok)
            let kinds = history.json?["history"]?.array?.compactMap { $0["kind"]?.string } ?? []
            #expect(kinds.first == "placed" && kinds.last == "failed" && kinds.contains("attempt_started"), "\(kinds)")
            #expect(history.json?["history"]?.array?.last?["by"]?.string?.hasPrefix("an operator (") == true)
            #expect(history.int("attempts") == 1 && history.int("unanswered_attempts") == 1)
            // The redriven one's: sent back by the operator.
            let redrivenHistory = try await client.call(.get, "/admin/orders/\(ids[0])/history")
            #expect(redrivenHistory.json?["history"]?.array?.contains { $0["kind"]?.string == "redriven" } == true)
            #expect(try await client.call(.get, "/admin/orders/\(ids[0])/history", authorized: false).status == .unauthorized)
            #expect(try await client.call(.get, "/admin/orders/nope/history").errorCode == "not_found")
        }
    }

    @Test func bulkActionsAskForConfirmationAndTouchOnlyOpenOrders() async throws {
        try await TestSystem.withLiveSystem(Self.config()) { system, client in
            let ids = try await Self.deadLettered(3, open: 3, system: system, client: client)
            _ = try await system.reconciler.settleNow(ids[2], by: "test")
            for path in ["/admin/dead-letters/redrive", "/admin/dead-letters/redrive?confirm=payments",
                         "/admin/dead-letters/settle"] {
                let unconfirmed = try await client.call(.post, path)
                #expect(unconfirmed.status == .conflict)
                #expect(unconfirmed.errorCode == "confirmation_required")
                #expect(unconfirmed.string("error", "message")?.contains("the 2 whose orders are open") == true)
                #expect(unconfirmed.string("error", "message")?.contains("?confirm=payments-dlq") == true)
            }
            // Nothing moved.
            #expect(try await client.call(.get, "/admin/dead-letters").int("total") == 3)
            let redriven = try await client.call(.post, "/admin/dead-letters/redrive?confirm=payments-dlq")
            #expect(redriven.status == .ok)
            #expect(redriven.int("redriven") == 2)
            #expect(try await client.call(.get, "/stats").int("queue", "visible") == 2)
            for id in ids.prefix(2) { #expect(try await system.store.order(id: id)?.status == .pending) }
            // Dead-lettered again, then settled in bulk.
            _ = try await Self.deadLettered(0, open: 2, system: system, client: client)
            let settled = try await client.call(.post, "/admin/dead-letters/settle?confirm=payments-dlq")
            #expect(settled.status == .ok)
            #expect(settled.int("settled", "failed") == 2)
            #expect(settled.int("unresolved") == 0 && settled.int("skipped_final") == 0)
            for id in ids { #expect(try await system.store.order(id: id)?.status == .failed) }
        }
    }

    @Test func anOrderWhoseHoldIsEndingIsNotSentBackWhileTheReconcilerSettlesIt() async throws {
        var config = Self.config()
        // Shorter than the margin a redrive must leave: every dead letter is as good as settling.
        config.queue.deadLetterHold = .seconds(10)
        try await TestSystem.withLiveSystem(config) { system, client in
            let ids = try await Self.deadLettered(1, open: 1, system: system, client: client)
            let message = try #require(try await client.call(.get, "/admin/dead-letters?state=open").json?["dead_letters"]?.array?.first?["message_id"]?.string)
            let refused = try await client.call(.post, "/admin/dead-letters/\(message)/redrive")
            #expect(refused.status == .conflict)
            #expect(refused.errorCode == "hold_ended")
            let bulk = try await client.call(.post, "/admin/dead-letters/redrive?confirm=payments-dlq")
            #expect(bulk.int("redriven") == 0 && bulk.int("skipped_settling") == 1)
            // Still where it was.
            #expect(try await system.paymentsQueue.statistics().visible == 0)
            #expect(try await system.store.order(id: ids[0])?.status == .processing)
        }
    }
}
