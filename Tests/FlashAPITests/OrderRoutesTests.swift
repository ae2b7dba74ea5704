import FlashCore
import FlashAPI
import FlashPayments
import FlashServer
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing

@Suite("Order routes over HTTP")
struct OrderRoutesTests {
    @Test func asyncOrderAnswers202AndIsStoredWithItsMessage() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { system, client in
            let reply = try await client.call(.post, "/orders/async", json: seedOrder)
            #expect(reply.status == .accepted)
            let id = try #require(reply.string("order_id"))
            #expect(reply.string("status") == "pending")
            #expect(reply.string("message_id") != nil)
            let order = try await client.call(.get, "/orders/\(id)")
            #expect(order.status == .ok)
            #expect(order.string("status") == "pending")
            #expect(order.string("customer_id") == "1234")
            #expect(order["total"] == .number(99.98, integer: nil))
            #expect(order.int("queue_position") == 1)
            #expect(order.string("estimated_completion") == nil)
            let stats = try await client.call(.get, "/stats")
            #expect(stats.int("orders", "pending") == 1)
            #expect(stats.int("queue", "visible") == 1)
        }
    }

    @Test func unknownOrderIs404JSON() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { _, client in
            let reply = try await client.call(.get, "/orders/does-not-exist")
            #expect(reply.status == .notFound)
            #expect(reply.errorCode == "not_found")
        }
    }

    @Test func badInputIs400AndCreatesNothing() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { system, client in
            let bodies: [(String, String)] = [
                ("{not json", "invalid_json"),
                (#"{"customer_id": "x", "items": "no"}"#, "invalid_field"),
                (#"{"items": [{"product_id": "a"}]}"#, "missing_field"),
                (#"{"customer_id": 1}"#, "missing_field"),
                (#"{"customer_id": 1, "items": []}"#, "empty_items"),
                (#"{"customer_id": 1, "items": [{"product_id": "a", "quantity": 0}]}"#, "invalid_quantity"),
                (#"{"customer_id": 1, "items": [{"product_id": "a", "quantity": 10001}]}"#, "invalid_quantity"),
                (#"{"customer_id": 1, "items": [{"product_id": "a", "price": -0.01}]}"#, "invalid_price"),
            ]
            for path in ["/orders/async", "/orders/sync"] {
                for (body, code) in bodies {
                    let reply = try await client.call(.post, path, json: body)
                    #expect(reply.status == .badRequest, "\(path) \(body)")
                    #expect(reply.errorCode == code, "\(path) \(body)")
                    #expect(reply.string("error", "message")?.isEmpty == false)
                }
            }
            let many = "[" + Array(repeating: #"{"product_id":"a"}"#, count: 101).joined(separator: ",") + "]"
            #expect(try await client.call(.post, "/orders/async", json: #"{"customer_id": 1, "items": \#(many)}"#).errorCode == "too_many_items")
            let huge = #"{"customer_id": 1, "pad": ""# + String(repeating: "x", count: 70 * 1024) + #"", "items": [{"product_id": "a"}]}"#
            let tooLarge = try await client.call(.post, "/orders/async", json: huge)
            #expect(tooLarge.status == .contentTooLarge)
            #expect(tooLarge.errorCode == "payload_too_large")
            let stats = try await client.call(.get, "/stats")
            #expect(stats.int("orders", "total") == 0)
            #expect(stats.int("queue", "visible") == 0)
            #expect(try await system.ledger.entries().isEmpty)
        }
    }

    @Test func unknownRoutesAndWrongMethodsAreJSON() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { _, client in
            let missing = try await client.call(.get, "/nowhere")
            #expect(missing.status == .notFound)
            #expect(missing.errorCode == "not_found")
            let wrong = try await client.call(.delete, "/orders/async")
            #expect(wrong.status == .methodNotAllowed)
            #expect(wrong.errorCode == "method_not_allowed")
            #expect(wrong.headers[.allow] == "POST")
            #expect(try await client.call(.post, "/stats").status == .methodNotAllowed)
        }
    }

    @Test func idempotencyKeyAndClientOrderIDNeverMakeASecondOrder() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { _, client in
            let key: HTTPFields = [HTTPField.Name("Idempotency-Key")!: "checkout-42"]
            let first = try await client.call(.post, "/orders/async", json: seedOrder, headers: key)
            let second = try await client.call(.post, "/orders/async", json: seedOrder, headers: key)
            #expect(first.status == .accepted)
            #expect(second.status == .accepted)
            #expect(first.string("order_id") == second.string("order_id"))
            #expect(first.string("message_id") == second.string("message_id"))
            // Where the order is read; and which answer was a replay.
            let replayed = HTTPField.Name("Idempotent-Replayed")!
            #expect(first.headers[.location] == "/orders/\(first.string("order_id") ?? "")")
            #expect(first.headers[replayed] == nil)
            #expect(second.headers[replayed] == "true")
            #expect(second.headers[.location] == first.headers[.location])
            let odd = try await client.call(.post, "/orders/async", json: #"{"order_id": "a b/ü", "customer_id": 1, "items": [{"product_id": "a"}]}"#)
            #expect(odd.headers[.location] == "/orders/a%20b%2F%C3%BC")
            #expect(try await client.call(.get, odd.headers[.location] ?? "").string("order_id") == "a b/ü")
            let body = #"{"order_id": "client-7", "customer_id": 1, "items": [{"product_id": "a"}]}"#
            let third = try await client.call(.post, "/orders/async", json: body)
            let fourth = try await client.call(.post, "/orders/async", json: body)
            #expect(third.string("order_id") == "client-7")
            #expect(fourth.string("order_id") == "client-7")
            let stats = try await client.call(.get, "/stats")
            #expect(stats.int("orders", "total") == 3)
            #expect(stats.int("queue", "visible") == 3)
        }
    }

    @Test func ordersAreBrowsedNewestFirstByStateWithTheAdminSecret() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { _, client in
            for n in 0..<3 {
                _ = try await client.call(.post, "/orders/async", json: #"{"order_id": "b\#(n)", "customer_id": 1, "items": [{"product_id": "a"}]}"#)
            }
            #expect(try await client.call(.get, "/admin/orders", authorized: false).status == .unauthorized)
            let all = try await client.call(.get, "/admin/orders")
            #expect(all.status == .ok)
            #expect(all.json?["orders"]?.array?.compactMap { $0["order_id"]?.string } == ["b2", "b1", "b0"])
            #expect(all["next"] == .null)
            let first = try await client.call(.get, "/admin/orders?status=pending&limit=2")
            #expect(first.json?["orders"]?.array?.compactMap { $0["order_id"]?.string } == ["b2", "b1"])
            let cursor = try #require(first.string("next"))
            let second = try await client.call(.get, "/admin/orders?status=pending&limit=2&before=\(cursor)")
            #expect(second.json?["orders"]?.array?.compactMap { $0["order_id"]?.string } == ["b0"])
            #expect(second["next"] == .null)
            #expect(try await client.call(.get, "/admin/orders?status=completed").json?["orders"]?.array?.isEmpty == true)
            for (query, code) in [("status=done", "invalid_status"), ("limit=0", "invalid_limit"), ("before=x", "invalid_cursor")] {
                let refused = try await client.call(.get, "/admin/orders?\(query)")
                #expect(refused.status == .badRequest)
                #expect(refused.errorCode == code)
            }
        }
    }

    @Test func syncOrderIsChargedWhileTheCustomerWaits() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { system, client in
            let reply = try await client.call(.post, "/orders/sync", json: seedOrder)
            #expect(reply.status == .ok)
            #expect(reply.string("status") == "completed")
            #expect(reply.int("attempts") == 1)
            let id = try #require(reply.string("order_id"))
            let ledger = try await system.ledger.entries()
            #expect(ledger[id]?.outcome.isApproved == true)
            #expect(ledger[id]?.amount == 99.98)
        }
    }

    @Test func declinedSyncOrderFailsWithTheReason() async throws {
        var config = TestSystem.configuration()
        config.payment.declineRate = 1
        try await TestSystem.withLiveSystem(config) { _, client in
            let reply = try await client.call(.post, "/orders/sync", json: seedOrder)
            #expect(reply.status == .ok)
            #expect(reply.string("status") == "failed")
            #expect(reply.string("failure_reason")?.contains("declined") == true)
        }
    }

    @Test func syncRefusesAtOnceWhenThePredictedWaitIsTooLong() async throws {
        try await TestSystem.withServices(TestSystem.configuration(latency: .milliseconds(5)), adjust: { services in
            // The prediction is the lanes' alone (a minute per charge expected), apart from the
            // gateway (5 ms) and far from any machine's speed: 60 s ahead > the 30 s limit, while
            // the customer served below has all of 30 s.
            services.lanes = CheckoutLanes(lanes: 1, expectedServiceTime: .seconds(60))
            services.syncTimeout = .seconds(30)
            return services.lanes
        }) { system, lanes, client in
            // A customer holds the only lane (the test takes it itself: no race with the clock).
            #expect(await lanes.enter(timeout: .seconds(1)))
            // The next would wait ~60 s (the expected charge) > 30 s: told at once. (The lane is
            // held until this call returns: a customer put in line instead would wait out the
            // limit and get a 504, if the test client did not give up first.)
            let refused = try await client.call(.post, "/orders/sync", json: seedOrder)
            lanes.leave(serviceTime: nil)
            #expect(refused.status == .serviceUnavailable)
            #expect(refused.errorCode == "overloaded")
            #expect(Int(refused.headers[.retryAfter] ?? "") ?? 0 >= 1)
            // With the lane free, a customer is served.
            #expect(try await client.call(.post, "/orders/sync", json: seedOrder).string("status") == "completed")
            // Nothing was stored or charged for the refused customer.
            #expect(try await system.ledger.entries().count == 1)
            #expect(try await system.store.counts().total == 1)
        }
    }

    @Test func statsFollowTheContract() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { _, client in
            let stats = try await client.call(.get, "/stats")
            #expect(stats.status == .ok)
            for key in ["total", "pending", "processing", "completed", "failed"] { #expect(stats.int("orders", key) != nil, "\(key)") }
            for key in ["visible", "in_flight", "delayed", "dead_letter"] { #expect(stats.int("queue", key) != nil, "\(key)") }
            #expect(stats["queue", "oldest_age_seconds"] != nil)
            for key in ["count", "busy"] { #expect(stats.int("workers", key) != nil, "\(key)") }
            for key in ["charges", "declines", "duplicate_charges_prevented"] { #expect(stats.int("payments", key) != nil, "\(key)") }
            for key in ["accepted_per_second", "processed_per_second"] { #expect(stats["rates", key] != nil, "\(key)") }
            let health = try await client.call(.get, "/health")
            #expect(health.status == .ok)
            #expect(health.string("status") == "healthy")
        }
    }
}

@Suite("Sync checkout timeouts")
struct SyncTimeoutTests {
    @Test func aCustomerWhoWouldWaitPastTheLimitForALaneGets504AndIsNotCharged() async throws {
        try await TestSystem.withServices(TestSystem.configuration(latency: .milliseconds(5)), adjust: { services in
            // The lanes expect 1 ms charges, so nobody is refused up front.
            services.lanes = CheckoutLanes(lanes: 1, expectedServiceTime: .milliseconds(1))
            services.syncTimeout = .milliseconds(600)
            return services.lanes
        }) { system, lanes, client in
            // Someone holds the only lane for longer than the limit.
            #expect(await lanes.enter(timeout: .seconds(1)))
            let arrived = ContinuousClock.now
            let late = try await client.call(.post, "/orders/sync", json: seedOrder)
            let waited = ContinuousClock.now - arrived
            lanes.leave(serviceTime: nil)
            #expect(late.status == .gatewayTimeout)
            #expect(late.errorCode == "timeout")
            #expect(late.string("error", "message")?.contains("nothing was charged") == true)
            // The lane is held until this call returns: any bound shows the deadline, not the lane,
            // ended it, so a generous one (a loaded machine stretches the real time measured).
            #expect(waited < .milliseconds(600) + .seconds(20))
            // A customer who gets the lane in time is served.
            #expect(try await client.call(.post, "/orders/sync", json: seedOrder).string("status") == "completed")
            // A repeat of an order an earlier request placed, refused for want of a lane, is not
            // told "nothing was charged" (had the first charge still been out, that would be
            // untrue): it is told of the order.
            let r1 = #"{"customer_id":"r","order_id":"r1","items":[{"product_id":"P","quantity":1,"price":1}]}"#
            #expect(try await client.call(.post, "/orders/sync", json: r1).string("status") == "completed")
            #expect(await lanes.enter(timeout: .seconds(1)))
            let repeated = try await client.call(.post, "/orders/sync", json: r1)
            lanes.leave(serviceTime: nil)
            #expect(repeated.status == .gatewayTimeout)
            let message = repeated.string("error", "message") ?? ""
            #expect(!message.contains("nothing was charged"), "\(message)")
            #expect(message.contains("order 'r1' was placed by an earlier request and is completed"), "\(message)")
            #expect(try await system.store.counts().total == 2)
        }
    }

    @Test func aChargeDecidedOnArrivalButUnansweredIsSettledCompletedAtTheDeadline() async throws {
        try await TestSystem.withServices(TestSystem.configuration(latency: .milliseconds(5)), adjust: { services in
            // The gateway decides the charge when it arrives (its ledger holds it), then stays silent.
            let gateway = SilentAfterDecidingGateway(services.gateway)
            services.gateway = gateway
            // The deadline is real time inside the endpoint, and the customer is answered only
            // at it; so both sides get a generous allowance. Before it: intake, a free lane,
            // placing the order and the gateway's decision (milliseconds on an idle machine) have
            // 4.8 s. After it: settling (the gateway's answer, a store write) has 10 s before the
            // test client's own fixed 15 s deadline.
            services.syncTimeout = .seconds(5)
            return gateway
        }) { system, gateway, client in
            let reply = try await client.call(.post, "/orders/sync", json: seedOrder)
            #expect(reply.status == .ok)
            #expect(reply.string("status") == "completed")
            let id = try #require(reply.string("order_id"))
            #expect(try await system.ledger.entries()[id]?.outcome.isApproved == true)
            // Answered at the deadline (the charge given up, not waited for), by the gateway's
            // word on what stands: charged, so completed, not voided.
            #expect(gateway.cancelled == 1)
            #expect(gateway.asked == 1)
            #expect(try await system.ledger.entries().count == 1)
            #expect(try await system.services.gateway.statistics().voided == 0)
            let counts = try await system.store.counts()
            #expect((counts.completed, counts.failed, counts.processing) == (1, 0, 0))
        }
    }
}

extension SyncTimeoutTests {
    /// A gateway that decides each charge (the simulator writes its ledger) and then does not
    /// answer, for a minute, unless the caller gives up first: then the charge throws
    /// `CancellationError` (it may be decided: ask ``PaymentGateway/finalOutcome(orderID:)``).
    final class SilentAfterDecidingGateway: PaymentGateway {
        let inner: any PaymentGateway
        private let cancellations = Mutex(0)
        private let questions = Mutex(0)

        init(_ inner: any PaymentGateway) { self.inner = inner }

        /// Charges given up by their caller.
        var cancelled: Int { cancellations.withLock { $0 } }
        /// Final outcomes asked for.
        var asked: Int { questions.withLock { $0 } }

        func charge(orderID: String, amount: Double) async throws -> PaymentOutcome {
            do {
                let outcome = try await inner.charge(orderID: orderID, amount: amount)
                try await Task.sleep(for: .seconds(60))
                return outcome
            } catch let error as CancellationError {
                cancellations.withLock { $0 += 1 }
                throw error
            }
        }

        func finalOutcome(orderID: String) async throws -> PaymentOutcome {
            questions.withLock { $0 += 1 }
            return try await inner.finalOutcome(orderID: orderID)
        }

        func statistics() async throws -> PaymentStatistics { try await inner.statistics() }
        var expectedLatency: Duration { inner.expectedLatency }
    }
}
