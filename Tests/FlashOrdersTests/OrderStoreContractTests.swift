import FlashBackend
import FlashCore
import FlashOrders
import FlashPostgres
import FlashTestSupport
import FlashQueue
import FlashSQLite
import Foundation
import Testing

/// Every backend the order-store and inventory contract runs against: SQLite always, PostgreSQL
/// when the test command started one (`FLASHSALE_TEST_POSTGRES`, see scripts/test).
enum OrderBackend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite
    case postgres

    static let postgresURL = ProcessInfo.processInfo.environment["FLASHSALE_TEST_POSTGRES"]
    static var allCases: [OrderBackend] { postgresURL == nil ? [.sqlite] : [.sqlite, .postgres] }

    var testDescription: String { rawValue }

    /// A fresh, empty store.
    func makeStore(strictCatalog: Bool = false) async throws -> StoreHarness {
        switch self {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flashsale-orders-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let path = directory.appendingPathComponent("orders.db").path
            return StoreHarness(open: {
                try await SQLiteBackend(configuration: .init(path: path, strictCatalog: strictCatalog))
            })
        case .postgres:
            // A schema of its own per store: every test starts from empty tables.
            var database = try PostgresDatabase.Configuration(url: try #require(Self.postgresURL))
            database.schema = "o_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            database.maxConnections = 6
            database.operationTimeout = .seconds(60)
            return StoreHarness(open: { [database] in
                try await PostgresBackend.started(configuration: .init(database: database, strictCatalog: strictCatalog))
            })
        }
    }
}

/// Opens a store's backend; each ``open()`` is another client of the same store, as another
/// process would be.
struct StoreHarness: Sendable {
    let open: @Sendable () async throws -> any FlashBackend

    /// Runs `body` with one open backend, shutting it down afterwards.
    func with(_ body: (any FlashBackend) async throws -> Void) async throws {
        let backend = try await open()
        do {
            try await body(backend)
            try await backend.shutdown()
        } catch {
            try? await backend.shutdown()
            throw error
        }
    }
}

/// The contract of ``OrderStore`` and the inventory gate (``Catalog``), written once and run
/// against every backend: placement with reservation, limits, prices, settle and release,
/// idempotency, untried deliveries, stored counts, and all of it under concurrency from several
/// clients of one store.
@Suite("Order store and inventory contract")
struct OrderStoreContractTests {
    static func order(_ customer: String, _ items: [(String, Int, Double?)], key: String? = nil, id: String? = nil) -> NewOrder {
        newOrder(customer, items, key: key, id: id)
    }

    @Test(arguments: OrderBackend.allCases)
    func aQueuedOrderIsStoredWithItsReservationAndItsMessage(_ backend: OrderBackend) async throws {
        try await backend.makeStore().with { backend in
            _ = try await backend.catalog.putProduct(id: "TV", stock: 5, perCustomerLimit: nil, price: 300)
            let placement = try await backend.orders.placeQueued(Self.order("c1", [("TV", 2, nil)]))
            #expect(placement.created)
            #expect(placement.order.status == .pending && placement.order.attempts == 0)
            #expect(placement.order.total == 600)
            #expect(try await backend.catalog.product(id: "TV") == Product(productID: "TV", stock: 3, reserved: 2, sold: 0, price: 300))
            #expect(try await backend.orders.counts() == OrderCounts(pending: 1))
            let messages = try await backend.paymentsQueue.receive(maxMessages: 10, wait: .zero)
            #expect(messages.count == 1)
            #expect(messages.first?.messageID == placement.messageID)
            #expect(PaymentMessage.orderID(in: messages.first?.body ?? "") == placement.order.id)
            #expect(try await backend.orders.order(id: placement.order.id) == placement.order)
        }
    }

    @Test(arguments: OrderBackend.allCases)
    func ordersAreBrowsedNewestFirstByStatusInPages(_ backend: OrderBackend) async throws {
        try await backend.makeStore().with { backend in
            var ids: [String] = []
            for n in 0..<5 { ids.append(try await backend.orders.placeQueued(Self.order("c\(n)", [("A", 1, 1)], id: "o\(n)")).order.id) }
            _ = try await backend.orders.startProcessing(["o1"])
            try await backend.orders.finish("o3", result: .completed)
            let all = try await backend.orders.orders(status: nil, before: nil, limit: 10)
            #expect(all.orders.map(\.id) == ["o4", "o3", "o2", "o1", "o0"])
            #expect(all.next == nil)
            #expect(try await backend.orders.orders(status: .pending, before: nil, limit: 10).orders.map(\.id) == ["o4", "o2", "o0"])
            #expect(try await backend.orders.orders(status: .processing, before: nil, limit: 10).orders.map(\.id) == ["o1"])
            #expect(try await backend.orders.orders(status: .completed, before: nil, limit: 10).orders.map { [$0.id, $0.status.rawValue] } == [["o3", "completed"]])
            #expect(try await backend.orders.orders(status: .failed, before: nil, limit: 10).orders.isEmpty)
            // Pages of two: every order once, in order, and the last page says it is the last.
            var seen: [String] = []
            var cursor: Int64?
            var pages = 0
            repeat {
                let page = try await backend.orders.orders(status: nil, before: cursor, limit: 2)
                seen += page.orders.map(\.id)
                cursor = page.next
                pages += 1
            } while cursor != nil && pages < 10
            #expect(seen == ["o4", "o3", "o2", "o1", "o0"])
            #expect(pages == 3)
        }
    }

    @Test(arguments: OrderBackend.allCases)
    func aRefusedOrderStoresNothingAndReservesNothing(_ backend: OrderBackend) async throws {
        try await backend.makeStore().with { backend in
            _ = try await backend.catalog.putProduct(id: "A", stock: 5, perCustomerLimit: nil, price: nil)
            _ = try await backend.catalog.putProduct(id: "B", stock: 1, perCustomerLimit: nil, price: nil)
            // All or nothing: A is available, B is not.
            await #expect(throws: InventoryRefusal.soldOut(productID: "B")) {
                try await backend.orders.placeQueued(Self.order("c1", [("A", 2, 1), ("B", 2, 1)]))
            }
            #expect(try await backend.catalog.product(id: "A")?.stock == 5)
            #expect(try await backend.catalog.product(id: "A")?.reserved == 0)
            #expect(try await backend.catalog.product(id: "B")?.stock == 1)
            #expect(try await backend.orders.counts() == OrderCounts())
            #expect(try await backend.paymentsQueue.statistics().total == 0)
        }
    }

    @Test(arguments: OrderBackend.allCases)
    func perCustomerLimitsCountOpenAndSoldUnitsAndFreeReleasedOnes(_ backend: OrderBackend) async throws {
        try await backend.makeStore().with { backend in
            _ = try await backend.catalog.putProduct(id: "PS5", stock: 10, perCustomerLimit: 2, price: 500)
            let first = try await backend.orders.placeQueued(Self.order("ann", [("PS5", 1, nil)]))
            _ = try await backend.orders.placeQueued(Self.order("ann", [("PS5", 1, nil)]))
            await #expect(throws: InventoryRefusal.limitExceeded(productID: "PS5", limit: 2)) {
                try await backend.orders.placeQueued(Self.order("ann", [("PS5", 1, nil)]))
            }
            // Another customer has a limit of their own.
            _ = try await backend.orders.placeQueued(Self.order("bob", [("PS5", 2, nil)]))
            // A failed order gives its units back to stock and to the customer's limit.
            try await backend.orders.finish(first.order.id, result: .failed(reason: "declined"))
            _ = try await backend.orders.placeQueued(Self.order("ann", [("PS5", 1, nil)]))
            #expect(try await backend.catalog.product(id: "PS5") == Product(productID: "PS5", stock: 6, reserved: 4, sold: 0, perCustomerLimit: 2, price: 500))
        }
    }

    @Test(arguments: OrderBackend.allCases)
    func theCatalogDecidesPricesAndStrictCatalogsRefuseUnknownProducts(_ backend: OrderBackend) async throws {
        try await backend.makeStore().with { backend in
            _ = try await backend.catalog.putProduct(id: "TV", stock: 5, perCustomerLimit: nil, price: 300)
            // The catalog's price wins; a product without one keeps the client's.
            let placed = try await backend.orders.placeQueued(Self.order("c1", [("TV", 1, 1), ("GIFT", 2, 5)]))
            #expect(placed.order.items.map(\.price) == [300, 5])
            #expect(placed.order.total == 310)
            await #expect(throws: InventoryRefusal.unknownProduct(productID: "GIFT")) {
                var order = Self.order("c1", [("GIFT", 1, 5)])
                order.requiresCatalog = true
                return try await backend.orders.placeQueued(order)
            }
        }
        try await backend.makeStore(strictCatalog: true).with { (backend: any FlashBackend) async throws in
            await #expect(throws: InventoryRefusal.unknownProduct(productID: "GIFT")) {
                try await backend.orders.placeQueued(Self.order("c1", [("GIFT", 1, 5)]))
            }
            #expect(try await backend.orders.counts().total == 0)
        }
    }

    @Test(arguments: OrderBackend.allCases)
    func finishingSellsOrReleasesOnceAndTheFirstResultStands(_ backend: OrderBackend) async throws {
        try await backend.makeStore().with { backend in
            _ = try await backend.catalog.putProduct(id: "TV", stock: 4, perCustomerLimit: nil, price: 300)
            let paid = try await backend.orders.placeQueued(Self.order("c1", [("TV", 1, nil)])).order.id
            let declined = try await backend.orders.placeQueued(Self.order("c2", [("TV", 2, nil)])).order.id
            #expect(try await backend.orders.finish(paid, result: .completed)?.status == .completed)
            let failed = try await backend.orders.finish(declined, result: .failed(reason: "card declined"))
            #expect(failed?.status == .failed && failed?.failureReason == "card declined" && failed?.finishedAt != nil)
            #expect(try await backend.catalog.product(id: "TV") == Product(productID: "TV", stock: 3, reserved: 0, sold: 1, price: 300))
            // A second result changes nothing: not the order, not the stock, not the counts.
            #expect(try await backend.orders.finish(paid, result: .failed(reason: "late"))?.status == .completed)
            let settled = try await backend.orders.settle(declined, result: .completed, counted: true, event: nil)
            #expect(settled?.changed == false && settled?.order.status == .failed)
            #expect(try await backend.catalog.product(id: "TV") == Product(productID: "TV", stock: 3, reserved: 0, sold: 1, price: 300))
            #expect(try await backend.orders.counts() == OrderCounts(completed: 1, failed: 1))
            #expect(try await backend.orders.settlementCounts() == SettlementCounts())
            #expect(try await backend.orders.finish("no-such-order", result: .completed) == nil)
        }
    }

    @Test(arguments: OrderBackend.allCases)
    func deliveriesStartAttemptsFinishWithTheirMessageOrGoBackUntried(_ backend: OrderBackend) async throws {
        try await backend.makeStore().with { backend in
            let store = backend.orders
            let a = try await store.placeQueued(Self.order("c1", [("P", 1, 10)])).order.id
            let b = try await store.placeQueued(Self.order("c2", [("P", 1, 10)])).order.id
            let messages = try await store.paymentsQueue.receive(maxMessages: 10, wait: .zero)
            #expect(messages.count == 2)
            let started = try await store.startProcessing([a, b])
            #expect(started[a]?.status == .processing && started[a]?.attempts == 1)
            #expect(try await store.counts() == OrderCounts(processing: 2))
            let receipt = { (id: String) in messages.first { PaymentMessage.orderID(in: $0.body) == id }!.receiptHandle }
            // Finished with its message: the message is gone in the same step.
            try await store.finish(a, result: .completed, deleting: receipt(a))
            // Given back untried: pending again, attempt and delivery uncounted.
            try await store.returnUntried([UntriedDelivery(orderID: b, receipt: receipt(b))])
            let back = try #require(try await store.order(id: b))
            #expect(back.status == .pending && back.attempts == 0 && back.processingAt == nil)
            #expect(try await store.counts() == OrderCounts(pending: 1, completed: 1))
            let again = try await store.paymentsQueue.receive(maxMessages: 10, wait: .zero)
            #expect(again.map { PaymentMessage.orderID(in: $0.body) } == [b])
            #expect(again.first?.receiveCount == 1)
            // A stale receipt deletes nothing, but the result (the gateway's answer) stands.
            try await store.finish(b, result: .completed, deleting: receipt(b))
            #expect(try await store.order(id: b)?.status == .completed)
            #expect(try await store.paymentsQueue.statistics().inFlight == 1)
            // A finished order is returned unchanged by a late delivery.
            #expect(try await store.startProcessing([a])[a]?.attempts == 1)
        }
    }

    /// A claim leases deliveries and starts their orders together: each delivery comes with
    /// its order as started; a finished order comes unchanged; an empty queue gives nothing;
    /// deliveries claimed and given back untried leave their orders as before the claim.
    @Test(arguments: OrderBackend.allCases)
    func aClaimLeasesDeliveriesAndStartsTheirOrders(_ backend: OrderBackend) async throws {
        try await backend.makeStore().with { backend in
            let store = backend.orders
            #expect(try await store.claim(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(30)).isEmpty)
            let a = try await store.placeQueued(Self.order("c1", [("P", 1, 10)])).order.id
            let b = try await store.placeQueued(Self.order("c2", [("P", 1, 10)])).order.id
            let claims = try await store.claim(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(30))
            #expect(Set(claims.compactMap(\.orderID)) == [a, b])
            for claim in claims {
                #expect(claim.order?.id == claim.orderID)
                #expect(claim.order?.status == .processing && claim.order?.attempts == 1)
                #expect(claim.message.receiveCount == 1)
            }
            #expect(try await store.order(id: a)?.status == .processing)
            #expect(try await store.counts() == OrderCounts(processing: 2))
            #expect(try await store.paymentsQueue.statistics().inFlight == 2)
            // Leased: a second claim finds nothing.
            #expect(try await store.claim(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(30)).isEmpty)

            // Given back untried: pending again, as before the claim.
            try await store.returnUntried(claims.map { UntriedDelivery(orderID: $0.orderID, receipt: $0.message.receiptHandle) })
            #expect(try await store.counts() == OrderCounts(pending: 2))
            // Finished, then claimed again through a late delivery: the order comes unchanged.
            let again = try await store.claim(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(30))
            #expect(again.count == 2 && again.allSatisfy { $0.order?.attempts == 1 })
            let first = try #require(again.first { $0.orderID == a })
            try await store.finish(a, result: .completed, deleting: nil)
            try await store.paymentsQueue.changeVisibility(first.message.receiptHandle, timeout: .zero)
            let late = try await store.claim(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(30))
            #expect(late.map(\.orderID) == [a])
            #expect(late.first?.order?.status == .completed && late.first?.order?.attempts == 1)

            // A message that names no order is claimed without one.
            _ = try await store.paymentsQueue.send("not a payment message")
            let stray = try await store.claim(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(30))
            #expect(stray.count == 1 && stray.first?.orderID == nil && stray.first?.order == nil)
        }
    }

    /// Delivers the queue's messages, one attempt each, until every one is dead-lettered.
    static func deadLetterAll(_ store: any OrderStore) async throws {
        for _ in 0..<100 {
            let got = try await store.paymentsQueue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .zero)
            guard let message = got.first else { return }
            _ = try await store.startProcessing([try #require(PaymentMessage.orderID(in: message.body))])
        }
        Issue.record("messages were still delivered after 100 receives")
    }

    @Test(arguments: OrderBackend.allCases)
    func deadLettersAreListedWithTheirOrdersAndRedrivenOnlyWhileTheOrderIsOpen(_ backend: OrderBackend) async throws {
        try await backend.makeStore().with { backend in
            let store = backend.orders
            let a = try await store.placeQueued(Self.order("c1", [("P", 1, 10)])).order.id
            let b = try await store.placeQueued(Self.order("c2", [("P", 1, 10)])).order.id
            try await Self.deadLetterAll(store)
            #expect(try await store.paymentsQueue.statistics().total == 0)
            let letters = try await store.deadLetters(limit: 10, openOnly: false)
            #expect(Set(letters.compactMap(\.orderID)) == [a, b])
            for letter in letters {
                #expect(letter.receiveCount == 5)
                #expect(letter.order?.status == .processing && letter.order?.attempts == 5)
                #expect(letter.messageID == letter.order?.messageID)
            }
            #expect(try await store.deadLetters(limit: 1, openOnly: false).count == 1)
            let messageA = try #require(letters.first { $0.orderID == a }).messageID
            let messageB = try #require(letters.first { $0.orderID == b }).messageID
            #expect(try await store.deadLetter(messageID: messageA)?.orderID == a)
            #expect(try await store.deadLetter(messageID: "no-such-message") == nil)
            // The reconciler's scan sees where the messages went.
            let scan = try await store.orphans(after: 0, limit: 100).orphans
            #expect(Set(scan.map(\.orderID)) == [a, b] && scan.allSatisfy { $0.reason == .deadLettered })
            // Both open; marked once (the time stays, the event is written once).
            #expect(Set(try await store.deadLetters(limit: 10, openOnly: true).compactMap(\.orderID)) == [a, b])
            guard case let .marked(marked) = try await store.markDeadLettered(a, messageID: messageA, verifying: true, by: "r") else {
                Issue.record("not marked")
                return
            }
            let since = try #require(marked.deadLetteredAt)
            #expect(try await store.markDeadLettered(a, messageID: messageA, verifying: true, by: "r") == .marked(marked))
            #expect(try await store.order(id: a)?.deadLetteredAt == since)
            _ = try await store.markDeadLettered(b, messageID: messageB, verifying: true, by: "r")
            // b is settled meanwhile: no longer open, and a redrive leaves its message where it is.
            _ = try await store.settle(b, result: .failed(reason: "voided"), counted: false,
                                       event: OrderEvent(orderID: b, at: 1, kind: .settled, detail: "failed: voided", actor: "s"))
            let open = try await store.deadLetters(limit: 10, openOnly: true)
            #expect(open.map(\.orderID) == [a] && open.first?.messageID == messageA && open.first?.order?.deadLetteredAt == since)
            let outcomes = try await store.redrive([messageA, messageB, "no-such-message"], by: "test")
            guard outcomes.count == 3, case let .redriven(redriven) = outcomes[0], case let .orderFinal(final) = outcomes[1] else {
                Issue.record("unexpected outcomes \(outcomes)")
                return
            }
            #expect(redriven.id == a && redriven.status == .pending && redriven.attempts == 5 && redriven.deadLetteredAt == nil)
            #expect(final.id == b && final.status == .failed)
            #expect(outcomes[2] == .notFound)
            #expect(try await store.redrive([messageA], by: "test") == [.notFound])
            #expect(try await store.order(id: a)?.deadLetteredAt == nil)
            // One that read the dead letter before the redrive does not mark the order again.
            guard case .notDeadLettered = try await store.markDeadLettered(a, messageID: messageA, verifying: true, by: "r") else {
                Issue.record("a redriven order was marked dead-lettered again")
                return
            }
            #expect(try await store.order(id: a)?.deadLetteredAt == nil)
            guard case .finished = try await store.markDeadLettered(b, messageID: messageB, verifying: true, by: "r") else {
                Issue.record("a finished order was not said to be finished")
                return
            }
            #expect(try await store.markDeadLettered("nope", messageID: "m", verifying: true, by: "r") == .notFound)
            // A settlement's event is written with it.
            #expect(try await store.events(of: b, limit: 10).map(\.kind) == [.deadLettered, .settled])
            // The dead-lettering and the redrive are in the order's history, with who did them.
            let events = try await store.events(of: a, limit: 10)
            #expect(events.map(\.kind) == [.deadLettered, .redriven] && events.map(\.actor) == ["r", "test"])
            #expect(events.allSatisfy { $0.detail.contains(messageA) })
            #expect(try await store.deadLetters(limit: 10, openOnly: false).map(\.orderID) == [b])
            #expect(try await store.deadLetters(limit: 10, openOnly: true).isEmpty)
            #expect(try await store.counts() == OrderCounts(pending: 1, failed: 1))
            // Back in the payments queue, the order's own message again: not an orphan, delivered
            // as if new (sent now: a new retention period), and finishing deletes it.
            #expect(try await !store.orphans(after: 0, limit: 100).orphans.contains { $0.orderID == a })
            let again = try await store.paymentsQueue.receive(maxMessages: 10, wait: .zero)
            #expect(again.map(\.messageID) == [messageA])
            #expect(again.first?.receiveCount == 1)
            #expect((again.first?.sentAtMillis ?? 0) >= since)
            #expect(try await store.startProcessing([a])[a]?.attempts == 6)
            try await store.finish(a, result: .completed, deleting: try #require(again.first).receiptHandle)
            #expect(try await store.paymentsQueue.statistics().total == 0)
            #expect(try await store.order(id: a)?.status == .completed)
        }
    }

    @Test(arguments: OrderBackend.allCases)
    func eventsAreKeptPerOrderInOrderAndTheSameEventIsKeptOnce(_ backend: OrderBackend) async throws {
        try await backend.makeStore().with { backend in
            let store = backend.orders
            let failed = OrderEvent(orderID: "o1", at: 10, kind: .attemptFailed, detail: "attempt 1 failed: timeout", actor: "w1")
            try await store.record([failed, OrderEvent(orderID: "o2", at: 11, kind: .deadLettered, detail: "x", actor: "r")])
            // The same event again (a step repeated after a crash) is kept once; another is added.
            try await store.record([failed, OrderEvent(orderID: "o1", at: 12, kind: .settled, detail: "failed: voided", actor: "r")])
            let events = try await store.events(of: "o1", limit: 10)
            #expect(events.map(\.kind) == [.attemptFailed, .settled])
            #expect(events.first == failed)
            #expect(try await store.events(of: "o1", limit: 1).count == 1)
            #expect(try await store.events(of: "o2", limit: 10).map(\.detail) == ["x"])
            #expect(try await store.events(of: "none", limit: 10).isEmpty)
        }
    }

    @Test(arguments: OrderBackend.allCases)
    func aRepeatedRequestGetsItsOrderAndADifferentOneIsRefused(_ backend: OrderBackend) async throws {
        try await backend.makeStore().with { backend in
            let store = backend.orders
            let first = try await store.placeQueued(Self.order("ann", [("P", 1, 10)], key: "k1"))
            let repeated = try await store.placeQueued(Self.order("ann", [("P", 1, 10)], key: "k1"))
            #expect(!repeated.created && repeated.order.id == first.order.id && repeated.messageID == first.messageID)
            await #expect(throws: PlacementConflict.idempotencyMismatch(key: "k1")) {
                try await store.placeQueued(Self.order("ann", [("P", 2, 10)], key: "k1"))
            }
            // A key belongs to its customer.
            #expect(try await store.placeQueued(Self.order("bob", [("P", 1, 10)], key: "k1")).created)
            // A client's order id: the same request gets its order; another customer cannot take it.
            let chosen = try await store.placeQueued(Self.order("ann", [("P", 1, 10)], id: "order-42"))
            #expect(try await !store.placeQueued(Self.order("ann", [("P", 1, 10)], id: "order-42")).created)
            await #expect(throws: PlacementConflict.orderIDTaken(orderID: "order-42")) {
                try await store.placeQueued(Self.order("bob", [("P", 1, 10)], id: "order-42"))
            }
            #expect(chosen.order.id == "order-42")
            #expect(try await store.counts().pending == 3)
            #expect(try await store.paymentsQueue.statistics().total == 3)
        }
    }

    @Test(arguments: OrderBackend.allCases)
    func manyClientsOfOneStoreNeverOversellAndCountExactly(_ backend: OrderBackend) async throws {
        let harness = try await backend.makeStore()
        // Two clients of the same store, as two processes would be.
        let one = try await harness.open()
        let two = try await harness.open()
        _ = try await one.catalog.putProduct(id: "GPU", stock: 50, perCustomerLimit: 1, price: 999)
        let placed = try await withThrowingTaskGroup(of: String?.self) { group in
            for n in 0..<300 {
                let store = n % 2 == 0 ? one.orders : two.orders
                // 150 customers, each trying twice: the limit of 1 holds too.
                group.addTask {
                    do {
                        return try await store.placeQueued(Self.order("c\(n % 150)", [("GPU", 1, nil)])).order.id
                    } catch is InventoryRefusal {
                        return nil
                    }
                }
            }
            var ids: [String] = []
            for try await id in group { if let id { ids.append(id) } }
            return ids
        }
        #expect(placed.count == 50)
        #expect(try await two.catalog.product(id: "GPU") == Product(productID: "GPU", stock: 0, reserved: 50, sold: 0, perCustomerLimit: 1, price: 999))
        // Finished concurrently from both clients, some twice: each order moves once.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, id) in placed.enumerated() {
                let result: OrderResult = index % 5 == 0 ? .failed(reason: "declined") : .completed
                group.addTask { try await one.orders.finish(id, result: result) }
                group.addTask { try await two.orders.finish(id, result: result) }
            }
            try await group.waitForAll()
        }
        let product = try #require(try await one.catalog.product(id: "GPU"))
        #expect(product.sold == 40 && product.reserved == 0 && product.stock == 10)
        #expect(product.stock + product.reserved + product.sold == 50)
        // The stored counts are exact, whichever client asks.
        #expect(try await one.orders.counts() == OrderCounts(completed: 40, failed: 10))
        #expect(try await two.orders.counts() == OrderCounts(completed: 40, failed: 10))
        try await one.shutdown()
        try await two.shutdown()
    }

    /// A client may remember the catalog between orders (PostgreSQL's one-statement groups do),
    /// but every decision holds against the catalog as it is when the order is stored, whatever
    /// another client changed meanwhile: stock sold or restocked, a new price, a new limit, a
    /// product that appeared.
    @Test(arguments: OrderBackend.allCases)
    func everyDecisionHoldsAgainstWhatAnotherClientChanged(_ backend: OrderBackend) async throws {
        let harness = try await backend.makeStore()
        let one = try await harness.open()
        let two = try await harness.open()
        _ = try await one.catalog.putProduct(id: "TV", stock: 60, perCustomerLimit: nil, price: 300)
        // Both clients have seen the product; then both sell it at once, each behind the other's back.
        _ = try await one.orders.placeQueued(Self.order("a", [("TV", 1, nil)]))
        _ = try await two.orders.placeQueued(Self.order("b", [("TV", 1, nil)]))
        let sold = try await withThrowingTaskGroup(of: Int.self) { group in
            for n in 0..<200 {
                let store = n % 2 == 0 ? one.orders : two.orders
                group.addTask {
                    do {
                        return try await store.placeQueued(Self.order("c\(n)", [("TV", 1, nil)])).order.items[0].quantity
                    } catch is InventoryRefusal {
                        return 0
                    }
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(sold == 58)
        #expect(try await one.catalog.product(id: "TV") == Product(productID: "TV", stock: 0, reserved: 60, sold: 0, perCustomerLimit: nil, price: 300))

        // Restocked; then repriced by the other client: the new price is charged.
        _ = try await two.catalog.putProduct(id: "TV", stock: 100, perCustomerLimit: nil, price: 300)
        #expect(try await one.orders.placeQueued(Self.order("d", [("TV", 1, nil)])).order.total == 300)
        _ = try await two.catalog.putProduct(id: "TV", stock: 100, perCustomerLimit: nil, price: 250)
        #expect(try await one.orders.placeQueued(Self.order("d", [("TV", 2, nil)])).order.total == 500)
        // Stock taken away by the other client: refused, though this client saw 98 left.
        _ = try await two.catalog.setStock(id: "TV", stock: 1)
        await #expect(throws: InventoryRefusal.soldOut(productID: "TV")) {
            try await one.orders.placeQueued(Self.order("e", [("TV", 2, nil)]))
        }
        // A limit set by the other client counts at once.
        _ = try await two.catalog.putProduct(id: "TV", stock: 10, perCustomerLimit: 1, price: 250)
        _ = try await one.orders.placeQueued(Self.order("f", [("TV", 1, nil)]))
        await #expect(throws: InventoryRefusal.limitExceeded(productID: "TV", limit: 1)) {
            try await one.orders.placeQueued(Self.order("f", [("TV", 1, nil)]))
        }

        // Not in the catalog: accepted at the client's price, without stock. Once the other
        // client adds it, sold out, its stock is what decides.
        #expect(try await one.orders.placeQueued(Self.order("g", [("NEW", 1, 5)])).order.total == 5)
        _ = try await two.catalog.putProduct(id: "NEW", stock: 0, perCustomerLimit: nil, price: 7)
        await #expect(throws: InventoryRefusal.soldOut(productID: "NEW")) {
            try await one.orders.placeQueued(Self.order("g", [("NEW", 1, 5)]))
        }
        #expect(try await one.catalog.product(id: "NEW") == Product(productID: "NEW", stock: 0, reserved: 0, sold: 0, perCustomerLimit: nil, price: 7))
        try await one.shutdown()
        try await two.shutdown()
    }

    @Test(arguments: OrderBackend.allCases)
    func aPendingOrderKnowsRoughlyHowManyAreAheadOfIt(_ backend: OrderBackend) async throws {
        try await backend.makeStore().with { backend in
            var orders: [Order] = []
            for n in 0..<4 {
                orders.append(try await backend.orders.placeQueued(Self.order("c\(n)", [("P", 1, 1)])).order)
                try await Task.sleep(for: .milliseconds(2))
            }
            #expect(try await backend.orders.queuePosition(of: orders[0]) == 1)
            #expect(try await backend.orders.queuePosition(of: orders[3]) == 4)
            let finished = try #require(try await backend.orders.finish(orders[1].id, result: .completed))
            #expect(try await backend.orders.queuePosition(of: finished) == nil)
        }
    }

    /// Asking an order's place costs the same whatever the backlog: the count stops at the
    /// ceiling, and a place beyond it is not known (nil), rather than a scan of every message.
    @Test(arguments: OrderBackend.allCases)
    func aPlaceBeyondTheCountsCeilingIsNotCounted(_ backend: OrderBackend) async throws {
        try await backend.makeStore().with { backend in
            let first = try await backend.orders.placeQueued(Self.order("c0", [("P", 1, 1)])).order
            let queue = backend.orders.paymentsQueue
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<10 {
                    group.addTask {
                        for batch in 0..<(QueueLimits.countCeiling / 100) {
                            _ = try await queue.sendBatch((0..<10).map { OutgoingMessage("filler \(task) \(batch) \($0)") })
                        }
                    }
                }
                try await group.waitForAll()
            }
            try await Task.sleep(for: .milliseconds(2))
            let last = try await backend.orders.placeQueued(Self.order("c1", [("P", 1, 1)])).order
            #expect(try await backend.orders.queuePosition(of: first) == 1)
            #expect(try await backend.orders.queuePosition(of: last) == nil)
        }
    }
}
