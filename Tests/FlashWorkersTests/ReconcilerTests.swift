import FlashCore
import FlashOrders
import FlashPayments
import FlashQueue
import FlashServer
import FlashWorkers
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// A gateway that cannot be reached for some orders' outcomes (as when the provider is down):
/// the simulator for everything else.
final class UnreachableForSome: PaymentGateway {
    let inner: any PaymentGateway
    let unreachable = Mutex<Set<String>>([])
    /// The orders whose outcome was asked for, in the order asked (answered or not).
    let asked = Mutex<[String]>([])

    init(_ inner: any PaymentGateway) { self.inner = inner }

    func charge(orderID: String, amount: Double) async throws -> PaymentOutcome {
        try await inner.charge(orderID: orderID, amount: amount)
    }

    func finalOutcome(orderID: String) async throws -> PaymentOutcome {
        asked.withLock { $0.append(orderID) }
        if unreachable.withLock({ $0.contains(orderID) }) { throw TransientPaymentError("gateway unreachable (test)") }
        return try await inner.finalOutcome(orderID: orderID)
    }

    func statistics() async throws -> PaymentStatistics { try await inner.statistics() }
    var expectedLatency: Duration { inner.expectedLatency }
}

@Suite("Reconciler and the rule of final states")
struct ReconcilerTests {
    typealias Pool = WorkerPoolTests

    static func product(_ system: FlashSystem, _ id: String) async throws -> Product {
        try #require(try await system.catalog.product(id: id))
    }

    static func order(_ n: Int, product: String) -> NewOrder {
        NewOrder(id: TimeOrderedID.make(), customerID: "c\(n)", items: [OrderItem(productID: product, quantity: 1, price: nil)],
                 channel: .async, idempotencyKey: nil)
    }

    @Test func aPurgedOrderNeverChargedFailsAndItsStockComesBack() async throws {
        let system = try await FlashSystem.open(Pool.configuration(workers: 0, latency: .milliseconds(5)), logger: Pool.logger)
        _ = try await system.catalog.putProduct(id: "TV", stock: 5, perCustomerLimit: nil, price: 300)
        var ids: [String] = []
        for n in 0..<3 { ids.append(try await system.store.placeQueued(Self.order(n, product: "TV")).order.id) }
        // One of them was charged before the purge (its worker got that far).
        _ = try await system.services.gateway.charge(orderID: ids[0], amount: 300)
        try await system.paymentsQueue.purge()
        await system.reconciler.sweep()
        #expect(try await system.store.order(id: ids[0])?.status == .completed)
        for id in ids.dropFirst() {
            let order = try #require(try await system.store.order(id: id))
            #expect(order.status == .failed)
            #expect(order.failureReason?.contains("payment message gone") == true)
        }
        let tv = try await Self.product(system, "TV")
        #expect((tv.stock, tv.reserved, tv.sold) == (4, 0, 1))
        #expect(try await system.store.settlementCounts() == SettlementCounts(completed: 1, failed: 2))
        // Never charged, and now never chargeable: a late charge for a failed order takes nothing.
        #expect(try await system.services.gateway.charge(orderID: ids[1], amount: 300) == .voided)
        #expect(try await system.services.gateway.statistics().charges == 1)
        try await system.close()
    }

    @Test func ordersWhoseMessagesOutliveRetentionAreSettledEvenWithNoWorkers() async throws {
        var config = Pool.configuration(workers: 0, latency: .milliseconds(5))
        config.queue.messageRetention = .milliseconds(300)
        let system = try await FlashSystem.open(config, logger: Pool.logger)
        _ = try await system.catalog.putProduct(id: "CAM", stock: 2, perCustomerLimit: nil, price: 250)
        let id = try await system.store.placeQueued(Self.order(1, product: "CAM")).order.id
        try await Task.sleep(for: .milliseconds(400))
        await system.reconciler.sweep()
        #expect(try await system.store.order(id: id)?.status == .failed)
        #expect(try await system.paymentsQueue.statistics().expired == 1)
        #expect(try await Self.product(system, "CAM").stock == 2)
        try await system.close()
    }

    @Test func aSyncOrderWhoseRequestDiedIsSettledOnceItsHoldEnds() async throws {
        let system = try await FlashSystem.open(Pool.configuration(workers: 0, latency: .milliseconds(5)), logger: Pool.logger)
        _ = try await system.catalog.putProduct(id: "TV", stock: 2, perCustomerLimit: nil, price: 300)
        let now = WallClock.nowMillis()
        let charged = NewOrder(id: "sync-charged", customerID: "a", items: [OrderItem(productID: "TV", quantity: 1, price: nil)],
                               channel: .sync, idempotencyKey: nil)
        let uncharged = NewOrder(id: "sync-uncharged", customerID: "b", items: [OrderItem(productID: "TV", quantity: 1, price: nil)],
                                 channel: .sync, idempotencyKey: nil)
        let held = NewOrder(id: "sync-held", customerID: "c", items: [OrderItem(productID: "X", quantity: 1, price: 1)],
                            channel: .sync, idempotencyKey: nil)
        // Two requests died (their holds have ended); one is still within its hold.
        _ = try await system.store.placeImmediate(charged, holdUntil: now - 1)
        _ = try await system.store.placeImmediate(uncharged, holdUntil: now - 1)
        _ = try await system.store.placeImmediate(held, holdUntil: now + 60_000)
        // One request charged its order before its process died.
        _ = try await system.services.gateway.charge(orderID: "sync-charged", amount: 300)
        await system.reconciler.sweep()
        #expect(try await system.store.order(id: "sync-charged")?.status == .completed)
        #expect(try await system.store.order(id: "sync-uncharged")?.status == .failed)
        #expect(try await system.store.order(id: "sync-held")?.status == .processing)
        let tv = try await Self.product(system, "TV")
        #expect((tv.stock, tv.reserved, tv.sold) == (1, 0, 1))
        try await system.close()
    }

    @Test func anOrderChargedThenDeadLetteredEndsCompletedAndStaysSold() async throws {
        var config = Pool.configuration(workers: 2, latency: .milliseconds(5), visibility: .milliseconds(200))
        config.queue.maxReceives = 1
        let system = try await FlashSystem.open(config, logger: Pool.logger)
        _ = try await system.catalog.putProduct(id: "PS5", stock: 1, perCustomerLimit: nil, price: 499)
        let id = try await system.store.placeQueued(Self.order(1, product: "PS5")).order.id
        // A worker took the message, the gateway decided the charge, and the process died.
        _ = try await system.paymentsQueue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .milliseconds(200))
        _ = try await system.services.gateway.charge(orderID: id, amount: 499)
        try await Pool.withRunningPool(system) { _ in
            try await WorkerPoolTests().expectEventually { try await system.store.order(id: id)?.status.isTerminal == true }
        }
        let order = try #require(try await system.store.order(id: id))
        #expect(order.status == .completed)
        #expect(try await system.paymentsQueue.statistics().deadLettered == 1)
        let ps5 = try await Self.product(system, "PS5")
        #expect((ps5.stock, ps5.reserved, ps5.sold) == (0, 0, 1))
        #expect(try await system.services.gateway.statistics().charges == 1)
        try await system.close()
    }

    @Test func aDeadLetterThatCannotBeSettledDoesNotHoldUpTheRestOfItsBatch() async throws {
        var config = Pool.configuration(workers: 0, latency: .milliseconds(5), visibility: .milliseconds(100))
        config.queue.maxReceives = 1
        let system = try await FlashSystem.open(config, logger: Pool.logger)
        let pool = WorkerPoolTests()
        var placed: [String] = []
        for n in 0..<4 { placed.append(try await system.store.placeQueued(Self.order(n, product: "P")).order.id) }
        let ids = placed
        // Every message is delivered once and abandoned; the next receive dead-letters them all.
        // The abandoned lease's end is waited for (all four visible again), not slept on.
        let taken = try await system.paymentsQueue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .milliseconds(100))
        #expect(taken.count == 4)
        try await pool.expectEventually(timeout: .seconds(60)) { try await system.paymentsQueue.statistics().visible == 4 }
        #expect(try await system.paymentsQueue.receive(maxMessages: 10, wait: .zero).isEmpty)
        #expect(try await system.paymentsQueue.statistics().deadLettered == 4)
        // The gateway cannot be asked about the first order. The sweep is kept out of the way:
        // its first pass runs at once whatever the interval, and its orphan scan would settle the
        // dead-lettered orders itself (their messages are gone), so it reads no rows. Only the
        // dead-letter handler settles here, one message after another, in the batch's order.
        let gateway = UnreachableForSome(system.services.gateway)
        gateway.unreachable.withLock { $0 = [ids[0]] }
        // The reconciler's backoffs read a time that moves only when the test says.
        let time = ManualTime()
        var configuration = Reconciler.Configuration(interval: .seconds(3600), rowsPerSweep: 0, deadLetterRetry: .milliseconds(300))
        configuration.time = time.source
        let reconciler = Reconciler(
            configuration: configuration, store: system.store,
            settler: OrderSettler(store: system.store, gateway: gateway), paymentsQueue: system.paymentsQueue,
            deadLetterQueue: system.services.deadLetterQueue, processed: RateMeter(), logger: Pool.logger)
        let group = ServiceGroup(configuration: .init(services: [reconciler], logger: Pool.logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            // A deadline only for a machine that never gets there: the rest of the batch is
            // settled in the handler's first pass over it.
            try await pool.expectEventually(timeout: .seconds(60)) {
                var settled = 0
                for id in ids.dropFirst() where try await system.store.order(id: id)?.status == .failed { settled += 1 }
                return settled == 3
            }
            // Not held up, by the order of events rather than by time: the first four questions
            // are one for each order. The refused one was set aside; it was not asked again (nor
            // waited on) before each of the rest had been asked.
            let asked = gateway.asked.withLock { $0 }
            #expect(asked.count >= 4 && Set(asked.prefix(4)) == Set(ids), "\(asked)")
            // Unknown outcome: left open, not failed.
            #expect(try await system.store.order(id: ids[0])?.status.isTerminal == false)
            gateway.unreachable.withLock { $0 = [] }
            // The refused order's message comes back every 300 ms, but the gateway is not asked
            // again until the order's backoff (1 s after one refusal) has passed: on the
            // reconciler's time, which has not moved.
            time.advance(by: .milliseconds(999))
            try await Task.sleep(for: .seconds(1))
            #expect(try await system.store.order(id: ids[0])?.status.isTerminal == false)
            time.advance(by: .milliseconds(1))
            // Now it is asked on the message's next return (a deadline only for a machine that
            // never gets there); a dead letter parked for its ~12 h instead fails this.
            try await pool.expectEventually(timeout: .seconds(60)) { try await system.store.order(id: ids[0])?.status == .failed }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        // Asked once while unreachable and once after its backoff: never in between.
        #expect(gateway.asked.withLock { $0 }.filter { $0 == ids[0] }.count == 2)
        // All four settled by the dead-letter handler, as never charged.
        for id in ids {
            let reason = try await system.store.order(id: id)?.failureReason ?? ""
            #expect(reason.contains("dead-lettered"), "\(id): \(reason)")
        }
        try await system.close()
    }

    @Test func aDeadLetteredOrderIsHeldForAnOperatorUntilItsHoldEndsAndAPurgedOneIsNot() async throws {
        var config = Pool.configuration(workers: 0, latency: .milliseconds(5))
        config.queue.maxReceives = 1
        config.queue.deadLetterHold = .seconds(3600)
        let system = try await FlashSystem.open(config, logger: Pool.logger)
        var ids: [String] = []
        for n in 0..<3 { ids.append(try await system.store.placeQueued(Self.order(n, product: "P")).order.id) }
        // Each is delivered once and abandoned; the next receive dead-letters it.
        for _ in 0..<10 {
            let got = try await system.paymentsQueue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .zero)
            if got.isEmpty { break }
            _ = try await system.store.startProcessing(got.compactMap { PaymentMessage.orderID(in: $0.body) })
        }
        #expect(try await system.paymentsQueue.statistics().deadLettered == 3)
        // The sweep finds them dead-lettered: marked (the hold starts now, whatever their last
        // attempt) and left open for an operator.
        let before = WallClock.nowMillis()
        await system.reconciler.sweep()
        for id in ids {
            let order = try #require(try await system.store.order(id: id))
            #expect(order.status == .processing && (order.deadLetteredAt ?? 0) >= before)
            #expect(try await system.store.events(of: id, limit: 10).map(\.kind) == [.deadLettered])
        }
        #expect(await system.reconciler.heldUntil(ids[0]) != nil)
        // An order whose message is purged is not held.
        let purged = try await system.store.placeQueued(Self.order(9, product: "P")).order.id
        try await system.paymentsQueue.purge()
        await system.reconciler.sweep()
        #expect(try await system.store.order(id: purged)?.status == .failed)
        // Settled now by an operator: never charged, so voided and failed.
        guard case let .settled(settled) = try await system.reconciler.settleNow(ids[0], by: "test") else {
            Issue.record("not settled")
            return
        }
        #expect(settled.status == .failed && settled.failureReason?.contains("settled by an operator") == true)
        #expect(try await system.services.gateway.charge(orderID: ids[0], amount: 1) == .voided)
        #expect(try await system.store.events(of: ids[0], limit: 10).last?.actor == "an operator (test)")
        // Another is sent back to the payments queue.
        let message = try #require(try await system.store.deadLetters(limit: 10, openOnly: true).first { $0.orderID == ids[1] }).messageID
        guard case let .redriven(redriven) = try await system.store.redrive([message], by: "test").first else {
            Issue.record("not redriven")
            return
        }
        #expect(redriven.status == .pending)
        // Once the hold is over, the third is settled by the sweep; the redriven one has its
        // message again and is left to the workers.
        let ended = Reconciler(configuration: .init(deadLetterHold: .milliseconds(1)), store: system.store,
                               settler: OrderSettler(store: system.store, gateway: system.services.gateway),
                               paymentsQueue: system.paymentsQueue, deadLetterQueue: nil, processed: RateMeter(), logger: Pool.logger)
        try await Task.sleep(for: .milliseconds(5))
        #expect(await ended.heldUntil(ids[2]) == nil)
        await ended.sweep()
        let third = try #require(try await system.store.order(id: ids[2]))
        #expect(third.status == .failed && third.failureReason?.contains(OrphanReason.deadLettered.rawValue) == true, "\(third)")
        #expect(try await system.store.order(id: ids[1])?.status == .pending)
        #expect(try await system.paymentsQueue.statistics().visible == 1)
        try await system.close()
    }

    @Test func reconcilersRunningAtOnceSettleEachOrderOnce() async throws {
        let system = try await FlashSystem.open(Pool.configuration(workers: 0, latency: .milliseconds(5)), logger: Pool.logger)
        _ = try await system.catalog.putProduct(id: "P", stock: 100, perCustomerLimit: nil, price: 1)
        for n in 0..<60 { _ = try await system.store.placeQueued(Self.order(n, product: "P")) }
        try await system.paymentsQueue.purge()
        let others = (0..<3).map { _ in
            Reconciler(store: system.store, settler: OrderSettler(store: system.store, gateway: system.services.gateway),
                       paymentsQueue: system.paymentsQueue, deadLetterQueue: nil, processed: RateMeter(), logger: Pool.logger)
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await system.reconciler.sweep() }
            for other in others { group.addTask { await other.sweep() } }
        }
        #expect(try await system.store.settlementCounts() == SettlementCounts(completed: 0, failed: 60))
        #expect(try await system.store.counts().failed == 60)
        let product = try await Self.product(system, "P")
        #expect((product.stock, product.reserved) == (100, 0))
        #expect(try await system.services.gateway.statistics().voided == 60)
        try await system.close()
    }

    @Test func aMessageRowReusedAfterAPurgeDoesNotHideTheOrdersThePurgeOrphaned() async throws {
        let system = try await FlashSystem.open(Pool.configuration(workers: 0, latency: .milliseconds(5)), logger: Pool.logger)
        var old: [String] = []
        for n in 0..<3 { old.append(try await system.store.placeQueued(Self.order(n, product: "P")).order.id) }
        try await system.paymentsQueue.purge()
        // The emptied table hands out its first rows again.
        let fresh = try await system.store.placeQueued(Self.order(9, product: "P")).order.id
        await system.reconciler.sweep()
        for id in old { #expect(try await system.store.order(id: id)?.status == .failed, "\(id)") }
        #expect(try await system.store.order(id: fresh)?.status == .pending)
        try await system.close()
    }

}
