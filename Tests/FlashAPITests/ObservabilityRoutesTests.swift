import FlashAPI
import FlashCore
import FlashPayments
import FlashServer
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing

/// `/metrics`, request ids, the dashboard's feed and the OpenAPI document, as clients meet them.
@Suite("Metrics, request ids, dashboard feed, OpenAPI")
struct ObservabilityRoutesTests {
    static let requestID = HTTPField.Name("X-Request-Id")!

    /// `name{labels}` → value, from a Prometheus text exposition.
    static func samples(_ text: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    @Test func metricsCountRequestsByRouteTemplateAndReadTheFleetsFigures() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { _, client in
            _ = try await client.call(.put, "/products/PROD-001", json: #"{"stock": 10}"#)
            for _ in 0..<3 { #expect(try await client.call(.post, "/orders/async", json: seedOrder).status == .accepted) }
            #expect(try await client.call(.post, "/orders/async", json: #"{"customer_id": "#).status == .badRequest)
            var raw: [String] = []
            for index in 0..<20 {
                let id = "order-\(UUID().uuidString)"
                raw.append(id)
                #expect(try await client.call(.get, "/orders/\(id)").status == .notFound)
                let path = "/no-such-\(index)-\(UUID().uuidString)"
                raw.append(path)
                #expect(try await client.call(.get, path).status == .notFound)
            }
            let reply = try await client.call(.get, "/metrics")
            #expect(reply.status == .ok)
            #expect(reply.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
            let samples = Self.samples(reply.text)
            #expect(samples[#"flashsale_http_requests_total{method="POST",route="/orders/async",status="202"}"#] == 3)
            #expect(samples[#"flashsale_http_requests_total{method="POST",route="/orders/async",status="400"}"#] == 1)
            #expect(samples[#"flashsale_http_requests_total{method="GET",route="/orders/{id}",status="404"}"#] == 20)
            #expect(samples[#"flashsale_http_requests_total{method="GET",route="unmatched",status="404"}"#] == 20)
            #expect(samples[#"flashsale_http_request_duration_seconds_count{method="POST",route="/orders/async",status="202"}"#] == 3)
            // Bounded labels: no raw path and no order id ever becomes a label.
            for value in raw { #expect(!reply.text.contains(value)) }
            #expect(samples[#"flashsale_orders_accepted_total{endpoint="async"}"#] == 3)
            // Fleet figures, read at scrape time (no workers here: the orders wait in the queue).
            #expect(samples[#"flashsale_orders{status="pending"}"#] == 3)
            #expect(samples[#"flashsale_queue_messages{state="visible"}"#] == 3)
            #expect(samples[#"flashsale_product_units{product="PROD-001",state="available"}"#] == 4)
            #expect(samples[#"flashsale_product_units{product="PROD-001",state="reserved"}"#] == 6)
            #expect(samples["flashsale_backend_up"] == 1)
            #expect(reply.text.contains("# TYPE flashsale_http_request_duration_seconds histogram"))
        }
    }

    @Test func workersCountPaymentsAndFinishedOrders() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration(workers: 4)) { _, client in
            for _ in 0..<5 { _ = try await client.call(.post, "/orders/async", json: seedOrder) }
            try await expectEventually {
                try await client.call(.get, "/stats").int("orders", "completed") == 5
            }
            let samples = Self.samples(try await client.call(.get, "/metrics").text)
            #expect(samples[#"flashsale_payments_total{outcome="approved"}"#] == 5)
            #expect(samples[#"flashsale_payment_duration_seconds_count{outcome="approved"}"#] == 5)
            #expect(samples[#"flashsale_orders_finished_total{by="worker",status="completed"}"#] == 5)
            #expect(samples["flashsale_process_workers"] == 4)
            #expect(samples[#"flashsale_ledger_charges{outcome="approved"}"#] == 5)
        }
    }

    @Test func everyResponseCarriesARequestIdTakenFromTheClientWhenSane() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { _, client in
            let given = try await client.call(.get, "/health", headers: [Self.requestID: "trace-42.a:b_c"])
            #expect(given.headers[Self.requestID] == "trace-42.a:b_c")
            let errorReply = try await client.call(.post, "/orders/async", json: "{", headers: [Self.requestID: "bad-body-1"])
            #expect(errorReply.status == .badRequest)
            #expect(errorReply.headers[Self.requestID] == "bad-body-1")
            let first = try await client.call(.get, "/health").headers[Self.requestID]
            let second = try await client.call(.get, "/no/such/route").headers[Self.requestID]
            #expect(first?.isEmpty == false)
            #expect(second?.isEmpty == false)
            #expect(first != second)
            // An id that could break a log line or a header is replaced, not echoed.
            for unsafe in ["has space", String(repeating: "a", count: 129), "quote\"d", "semi;colon"] {
                let reply = try await client.call(.get, "/health", headers: [Self.requestID: unsafe])
                let id = try #require(reply.headers[Self.requestID])
                #expect(id != unsafe)
                #expect(!id.isEmpty)
            }
        }
    }

    @Test func theDashboardFeedReadsTheFleetOncePerTickForEveryViewer() async throws {
        // The system's own feed also ticks once a second (it runs in the service group): the
        // test reads until it sees the reading it made.
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { system, client in
            let feed = system.services.dashboard
            _ = try await client.call(.post, "/reset-stock/50")
            await feed.read()
            let viewer = try #require(feed.subscribe())
            let other = try #require(feed.subscribe())
            #expect(feed.viewers == 2)
            let history = try JSONValue.parse(Array(viewer.history.utf8))
            let kept = history.at(["snapshots"])?.array?.count ?? 0
            #expect(kept >= 1)
            #expect(history.at(["product"])?.string == "iphone_16")
            #expect(history.at(["window_seconds"])?.int == 600)
            for customer in 1...4 { _ = try await client.call(.post, "/buy", json: #"{"customer_id": \#(customer)}"#) }
            await feed.read()
            func firstWithFourOrders(_ stream: AsyncStream<String>) async throws -> String? {
                for await json in stream where json != DashboardFeed.keepAlive {
                    if try JSONValue.parse(Array(json.utf8)).at(["orders", "total"])?.int == 4 { return json }
                }
                return nil
            }
            let json = try #require(try await firstWithFourOrders(viewer.snapshots))
            let snapshot = try JSONValue.parse(Array(json.utf8))
            #expect(snapshot.at(["stock", "units"])?.int == 46)
            #expect(snapshot.at(["queue", "visible"])?.int == 4)
            #expect(snapshot.at(["workers", "count"])?.int == 0)
            #expect(snapshot.at(["reconciler", "completed"])?.int == 0)
            // The other viewer got the very same reading (the feed's own tick may come between).
            var otherGot = false
            for await reading in other.snapshots where reading == json {
                otherGot = true
                break
            }
            #expect(otherGot)
            // A later page receives every reading kept as its history.
            let late = try #require(feed.subscribe())
            #expect((try JSONValue.parse(Array(late.history.utf8))).at(["snapshots"])?.array?.count ?? 0 > kept)
            viewer.end()
            other.end()
            late.end()
            #expect(feed.viewers == 0)
        }
    }

    @Test func aReadingTheBackendCannotGiveIsAPingNotSilence() async throws {
        let system = try await FlashSystem.open(TestSystem.configuration(), logger: TestSystem.logger)
        let feed = system.services.dashboard
        let viewer = try #require(feed.subscribe())
        try await system.close()
        await feed.read()
        let stream = viewer.snapshots
        let first = try await withTimeout(.seconds(5)) {
            var iterator = stream.makeAsyncIterator()
            return await iterator.next()
        }
        #expect(first == DashboardFeed.keepAlive)
        viewer.end()
    }

    /// A payment gateway that does not answer takes only its own figures down: `/stats` answers
    /// with the rest and says which part is missing; `/metrics` says the gateway is down and the
    /// database is not.
    @Test func aGatewayThatDoesNotAnswerLeavesTheRestOfTheFiguresStanding() async throws {
        try await TestSystem.withServices(TestSystem.configuration(), adjust: { services in
            let gateway = SilentStatisticsGateway(services.gateway)
            services = FlashServices(store: services.store, deadLetterQueue: services.deadLetterQueue, gateway: gateway,
                                     membership: services.membership, reconciler: services.reconciler, lanes: services.lanes,
                                     syncTimeout: services.syncTimeout, processed: services.processed, catalog: services.catalog, admin: services.admin,
                                     outbox: services.outbox, metrics: services.metrics)
            return gateway
        }) { _, gateway, client in
            #expect(try await client.call(.post, "/orders/async", json: seedOrder).status == .accepted)
            let stats = try await client.call(.get, "/stats")
            #expect(stats.status == .ok, "\(stats.text)")
            #expect(stats.int("orders", "total") == 1)
            #expect(stats.string("unavailable", "payments", "reason")?.contains("no answer") == true, "\(stats.text)")
            #expect(stats["unavailable", "orders"] == nil && stats["unavailable", "queue"] == nil)
            #expect(gateway.asked > 0)

            let samples = Self.samples(try await client.call(.get, "/metrics").text)
            #expect(samples[#"flashsale_dependency_up{dependency="gateway"}"#] == 0)
            #expect(samples[#"flashsale_dependency_up{dependency="database"}"#] == 1)
            #expect(samples[#"flashsale_dependency_up{dependency="queue"}"#] == 1)
            #expect(samples["flashsale_backend_up"] == 1)
            #expect(samples[#"flashsale_orders{status="pending"}"#] == 1)
        }
    }

    /// A gateway that charges as usual but never answers for its figures (until cancelled).
    final class SilentStatisticsGateway: PaymentGateway {
        let inner: any PaymentGateway
        private let asks = Atomic<Int>(0)
        init(_ inner: any PaymentGateway) { self.inner = inner }
        var asked: Int { asks.load(ordering: .relaxed) }

        func charge(orderID: String, amount: Double) async throws -> PaymentOutcome { try await inner.charge(orderID: orderID, amount: amount) }
        func finalOutcome(orderID: String) async throws -> PaymentOutcome { try await inner.finalOutcome(orderID: orderID) }
        func statistics() async throws -> PaymentStatistics {
            asks.add(1, ordering: .relaxed)
            try await Task.sleep(for: .seconds(3_600))
            return try await inner.statistics()
        }
        var expectedLatency: Duration { inner.expectedLatency }
    }

    @Test func acceptLatencyIsTakenPerIntervalFromAcceptedOrdersOnly() async throws {
        let window = AcceptLatencyWindow()
        #expect(window.take().count == 0)
        #expect(window.take().p99Milliseconds == nil)
        for millis in 1...100 { window.record(.milliseconds(millis)) }
        let figures = window.take()
        #expect(figures.count == 100)
        #expect(abs((figures.p50Milliseconds ?? 0) - 50) < 0.5)
        #expect(abs((figures.p99Milliseconds ?? 0) - 99) < 0.5)
        #expect(window.take().count == 0)
        // Over HTTP (the router alone, so that no running feed takes the figures first): only
        // 2xx answers of the accept routes count.
        let system = try await FlashSystem.open(TestSystem.configuration(), logger: TestSystem.logger)
        let app = Application(router: buildRouter(system.services))
        try await app.test(.router) { client in
            let latency = system.services.acceptLatency
            _ = try await client.call(.post, "/orders/async", json: seedOrder)
            _ = try await client.call(.post, "/orders/async", json: "{")
            _ = try await client.call(.get, "/stats")
            #expect(latency.take().count == 1)
        }
        try await system.close()
    }

    @Test func theOpenAPIDocumentDescribesEveryRouteAndEveryRouteAnswersAsDocumented() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { system, client in
            let reply = try await client.call(.get, "/openapi.json")
            #expect(reply.status == .ok)
            let document = try #require(try JSONSerialization.jsonObject(with: Data(reply.text.utf8)) as? [String: Any])
            #expect((document["openapi"] as? String)?.hasPrefix("3.1") == true)
            #expect((document["info"] as? [String: Any])?["version"] as? String == FlashVersion.current, "the document's version is the binary's")
            let paths = try #require(document["paths"] as? [String: [String: Any]])
            let methods = ["get", "post", "put", "delete", "patch"]
            var documented: Set<String> = []
            for (path, item) in paths {
                for method in methods where item[method] != nil { documented.insert("\(method.uppercased()) \(path)") }
            }
            let served = Set(routeList(system.services))
            #expect(served.subtracting(documented).isEmpty, "served but not documented: \(served.subtracting(documented).sorted())")
            #expect(documented.subtracting(served).isEmpty, "documented but not served: \(documented.subtracting(served).sorted())")
            // Every documented operation, asked plainly, answers one of its documented statuses.
            for operation in documented.sorted() where operation != "GET /dashboard/events" {
                let parts = operation.split(separator: " ")
                let method = HTTPRequest.Method(rawValue: String(parts[0]))!
                let path = String(parts[1])
                let uri = path.replacingOccurrences(of: #"\{[^}]+\}"#, with: "x1", options: .regularExpression)
                let answer = try await client.call(method, uri, json: method == .get ? nil : "{}")
                let responses = try #require((paths[path]?[method.rawValue.lowercased()] as? [String: Any])?["responses"] as? [String: Any])
                let status = String(answer.status.code)
                let family = "\(status.prefix(1))XX"
                #expect(responses[status] != nil || responses[family] != nil || responses["default"] != nil,
                        "\(operation) answered \(status), documented: \(responses.keys.sorted())")
                if answer.headers[.contentType]?.hasPrefix("application/json") == true {
                    #expect(answer.json != nil, "\(operation) answered JSON that does not parse")
                }
            }
        }
    }
}

