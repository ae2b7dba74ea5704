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

/// An outage of the gateway or the store, of any length, turns no chargeable order into `failed`
/// and spends none of its deliveries: the pool stops, probes, and resumes by itself.
///
/// Each outage here lasts until the pool has probed the dependency many times (an event the test
/// counts, not a duration), with leases and backoffs short enough that, without the breaker, the
/// orders would use up their three deliveries many times over and be dead-lettered and failed.
@Suite("Worker pool: outages")
struct OutageTests {
    /// A gateway that is away while `down`: a charge fails transiently (nothing charged), and so
    /// does its probe and its final outcome.
    final class OutageGateway: PaymentGateway {
        let inner: any PaymentGateway
        let down = Atomic<Bool>(true)
        let probes = Atomic<Int>(0)
        let refused = Atomic<Int>(0)
        /// Every charge reaches the gateway and brings it down (a poison order): it fails, and
        /// the next probe fails too, after which the gateway is back.
        let crashesOnCharge: Bool

        init(_ inner: any PaymentGateway, crashesOnCharge: Bool = false) {
            self.inner = inner
            self.crashesOnCharge = crashesOnCharge
            down.store(!crashesOnCharge, ordering: .releasing)
        }

        func charge(orderID: String, amount: Double) async throws -> PaymentOutcome {
            if crashesOnCharge {
                down.store(true, ordering: .releasing)
                throw TransientPaymentError("the gateway closed the connection", reachedGateway: true)
            }
            if down.load(ordering: .acquiring) {
                refused.add(1, ordering: .relaxed)
                throw TransientPaymentError("payment gateway unreachable: connection refused", reachedGateway: false)
            }
            return try await inner.charge(orderID: orderID, amount: amount)
        }

        func finalOutcome(orderID: String) async throws -> PaymentOutcome {
            if down.load(ordering: .acquiring) { throw TransientPaymentError("payment gateway unreachable") }
            return try await inner.finalOutcome(orderID: orderID)
        }

        func statistics() async throws -> PaymentStatistics { try await inner.statistics() }

        func probe() async throws {
            probes.add(1, ordering: .relaxed)
            if down.load(ordering: .acquiring) {
                if crashesOnCharge { down.store(false, ordering: .releasing) }
                throw TransientPaymentError("payment gateway unreachable")
            }
        }

        var expectedLatency: Duration { inner.expectedLatency }
    }

    /// The system's store, away while `down` (every call the workers make to it fails), over a
    /// payments queue that stays up: the shape of `--queue sqs` while PostgreSQL is away.
    final class OutageStore: OrderStore {
        let inner: any OrderStore
        let down = Atomic<Bool>(false)
        let failedCalls = Atomic<Int>(0)

        init(_ inner: any OrderStore) { self.inner = inner }

        struct Away: Error {}

        private func check() throws {
            if down.load(ordering: .acquiring) {
                failedCalls.add(1, ordering: .relaxed)
                throw Away()
            }
        }

        var paymentsQueue: any MessageQueue { inner.paymentsQueue }
        func placeQueued(_ order: NewOrder) async throws -> Placement { try check(); return try await inner.placeQueued(order) }
        func placeImmediate(_ order: NewOrder, holdUntil: Int64) async throws -> Placement {
            try check()
            return try await inner.placeImmediate(order, holdUntil: holdUntil)
        }
        func order(id: String) async throws -> Order? { try check(); return try await inner.order(id: id) }
        func orders(status: OrderStatus?, before cursor: Int64?, limit: Int) async throws -> OrderPage {
            try check(); return try await inner.orders(status: status, before: cursor, limit: limit)
        }
        func startProcessing(_ orderIDs: [String]) async throws -> [String: Order] { try check(); return try await inner.startProcessing(orderIDs) }
        func record(_ events: [OrderEvent]) async throws { try check(); try await inner.record(events) }
        func markDeadLettered(_ orderID: String, messageID: String, verifying: Bool, by actor: String) async throws -> DeadLetterMark {
            try check(); return try await inner.markDeadLettered(orderID, messageID: messageID, verifying: verifying, by: actor)
        }
        func events(of orderID: String, limit: Int) async throws -> [OrderEvent] { try check(); return try await inner.events(of: orderID, limit: limit) }
        func returnUntried(_ deliveries: [UntriedDelivery]) async throws { try check(); try await inner.returnUntried(deliveries) }
        func returnAttempts(_ orderIDs: [String]) async throws { try check(); try await inner.returnAttempts(orderIDs) }
        func finish(_ orderID: String, result: OrderResult, deleting receipt: ReceiptHandle?) async throws -> Order? {
            try check()
            return try await inner.finish(orderID, result: result, deleting: receipt)
        }
        func settle(_ orderID: String, result: OrderResult, counted: Bool, event: OrderEvent?) async throws -> FinishedOrder? {
            try check()
            return try await inner.settle(orderID, result: result, counted: counted, event: event)
        }
        func orphans(after cursor: Int64, limit: Int) async throws -> OrphanScan { try check(); return try await inner.orphans(after: cursor, limit: limit) }
        func expiredHolds(now: Int64, limit: Int) async throws -> [Orphan] { try check(); return try await inner.expiredHolds(now: now, limit: limit) }
        func settlementCounts() async throws -> SettlementCounts { try check(); return try await inner.settlementCounts() }
        func counts() async throws -> OrderCounts { try check(); return try await inner.counts() }
    }

    /// Three deliveries per order and a 10 ms first backoff, so that a charge's retries would spend
    /// them within a second of outage; probes every 10–50 ms. `lease`: how soon a delivery that
    /// was never given back (the store away) comes back.
    static func system(lease: Duration) async throws -> FlashSystem {
        var config = WorkerPoolTests.configuration(workers: 0, latency: .milliseconds(5), visibility: lease)
        config.queue.maxReceives = 3
        return try await FlashSystem.open(config, logger: WorkerPoolTests.logger)
    }

    static func pool(store: any OrderStore, gateway: any PaymentGateway, lease: Duration) -> WorkerPool {
        WorkerPool(configuration: .init(workers: 3, visibilityTimeout: lease, retryBackoff: .milliseconds(10),
                                        maxRetryBackoff: .milliseconds(40), shutdownDeadline: .seconds(60), receiveWait: .milliseconds(100),
                                        firstProbe: .milliseconds(10), longestProbe: .milliseconds(50)),
                   store: store, gateway: gateway, logger: WorkerPoolTests.logger)
    }

    /// Runs `pool` and the system's reconciler (which fails a dead-lettered order, as in
    /// production) while `body` runs.
    static func running(_ pool: WorkerPool, _ system: FlashSystem, _ body: () async throws -> Void) async throws {
        let group = ServiceGroup(configuration: .init(services: [system.reconciler, pool], logger: WorkerPoolTests.logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                try await body()
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    static func expectNothingLostOrFailed(_ system: FlashSystem, _ ids: [String], sourceLocation: SourceLocation = #_sourceLocation) async throws {
        #expect(try await system.paymentsQueue.statistics().deadLettered == 0, sourceLocation: sourceLocation)
        for id in ids {
            let status = try await system.store.order(id: id)?.status
            #expect(status != .failed, "\(id) \(String(describing: status))", sourceLocation: sourceLocation)
        }
    }

    @Test func aGatewayOutageSpendsNoDeliveriesAndTheOrdersAreChargedWhenItReturns() async throws {
        // A lease no test run outlasts: the deliveries counted are the pool's own doing.
        let system = try await Self.system(lease: .seconds(600))
        var ids: [String] = []
        for n in 0..<4 { ids.append(try await system.store.placeQueued(WorkerPoolTests.order(n)).order.id) }
        let gateway = OutageGateway(system.services.gateway)
        let pool = Self.pool(store: system.store, gateway: gateway, lease: .seconds(600))
        try await Self.running(pool, system) {
            // Away: the pool found it so, stopped, and keeps probing (40 probes: well over a
            // second at the longest interval, in which the old pool spent every delivery).
            try await WorkerPoolTests().expectEventually(timeout: .seconds(60)) { gateway.probes.load(ordering: .relaxed) >= 40 }
            #expect(pool.waitingFor == ["gateway"])
            #expect(gateway.refused.load(ordering: .relaxed) >= 1)
            try await Self.expectNothingLostOrFailed(system, ids)
            gateway.down.store(false, ordering: .releasing)
            try await WorkerPoolTests().expectEventually(timeout: .seconds(60)) { try await system.store.counts().completed == 4 }
        }
        try await Self.expectNothingLostOrFailed(system, ids)
        #expect(pool.waitingFor.isEmpty)
        #expect(pool.outages["gateway", default: 0] >= 1)
        for id in ids {
            // The charges refused while the gateway was away went back untried: one attempt each.
            #expect(try await system.store.order(id: id)?.attempts == 1)
        }
        #expect(try await system.services.gateway.statistics().charges == 4)
        try await system.close()
    }

    @Test func aStoreOutageSpendsNoDeliveriesAndTheOrdersAreChargedWhenItReturns() async throws {
        // A delivery the pool could not give back (the store is away) comes back after 1 s: the
        // old pool received it again each time, and dead-lettered it at the fourth.
        let system = try await Self.system(lease: .seconds(1))
        var ids: [String] = []
        for n in 0..<4 { ids.append(try await system.store.placeQueued(WorkerPoolTests.order(n)).order.id) }
        let store = OutageStore(system.store)
        store.down.store(true, ordering: .releasing)
        let pool = Self.pool(store: store, gateway: system.services.gateway, lease: .seconds(1))
        try await Self.running(pool, system) {
            // The store's probe is one of its calls: 120 failed calls take over 5 s (at most one
            // probe per 50 ms), the time the old pool took to dead-letter every order twice over.
            try await WorkerPoolTests().expectEventually(timeout: .seconds(60)) { store.failedCalls.load(ordering: .relaxed) >= 120 }
            #expect(pool.waitingFor == ["database"])
            try await Self.expectNothingLostOrFailed(system, ids)
            store.down.store(false, ordering: .releasing)
            try await WorkerPoolTests().expectEventually(timeout: .seconds(60)) { try await system.store.counts().completed == 4 }
        }
        try await Self.expectNothingLostOrFailed(system, ids)
        #expect(pool.waitingFor.isEmpty)
        #expect(pool.outages["database", default: 0] >= 1)
        #expect(try await system.services.gateway.statistics().charges == 4)
        try await system.close()
    }

    @Test func anOrderWhoseChargeBringsTheGatewayDownIsStillDeadLettered() async throws {
        // The gateway is away after each of its charges (its probe fails once): the charge
        // reached it, so the delivery counts, and the order cannot loop for ever between the
        // breaker's pauses.
        let system = try await Self.system(lease: .seconds(600))
        let id = try await system.store.placeQueued(WorkerPoolTests.order(1)).order.id
        let gateway = OutageGateway(system.services.gateway, crashesOnCharge: true)
        let pool = Self.pool(store: system.store, gateway: gateway, lease: .seconds(600))
        try await Self.running(pool, system) {
            try await WorkerPoolTests().expectEventually(timeout: .seconds(60)) { try await system.store.order(id: id)?.status == .failed }
        }
        #expect(pool.outages["gateway", default: 0] >= 1)
        #expect(try await system.paymentsQueue.statistics().deadLettered == 1)
        #expect(try await system.store.order(id: id)?.attempts == 3)
        try await system.close()
    }

    @Test func aGatewayThatAnswersItsProbeButRefusesAnOrderStillDeadLettersIt() async throws {
        // The breaker is for a gateway that is away, not for a poison order: a gateway whose
        // health check answers, but which refuses every charge, spends the order's deliveries.
        var config = WorkerPoolTests.configuration(workers: 0, latency: .milliseconds(5))
        config.payment.transientErrorRate = 1
        config.queue.maxReceives = 3
        let system = try await FlashSystem.open(config, logger: WorkerPoolTests.logger)
        let id = try await system.store.placeQueued(WorkerPoolTests.order(1)).order.id
        let pool = Self.pool(store: system.store, gateway: system.services.gateway, lease: .seconds(30))
        try await Self.running(pool, system) {
            try await WorkerPoolTests().expectEventually(timeout: .seconds(60)) { try await system.store.order(id: id)?.status == .failed }
        }
        #expect(pool.outages["gateway"] == 0)
        #expect(try await system.paymentsQueue.statistics().deadLettered == 1)
        try await system.close()
    }
}
