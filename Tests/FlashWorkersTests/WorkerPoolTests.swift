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

@Suite("Worker pool")
struct WorkerPoolTests {
    static func configuration(workers: Int, latency: Duration, visibility: Duration = .seconds(30)) -> FlashConfiguration {
        var config = FlashConfiguration()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flashsale-workers-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        config.backend.path = directory.appendingPathComponent("flashsale.db").path
        config.workers.count = workers
        config.payment.latency = .fixed(latency)
        config.queue.visibilityTimeout = visibility
        config.workers.retryBackoff = .milliseconds(10)
        config.workers.shutdownDeadline = .seconds(5)
        return config
    }

    static var logger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    static func order(_ n: Int, price: Double = 10) -> NewOrder {
        NewOrder(id: TimeOrderedID.make(), customerID: "c\(n)", items: [OrderItem(productID: "P", quantity: 1, price: price)],
                 channel: .async, idempotencyKey: nil)
    }

    /// Runs the system's worker pool and reconciler in a service group while `body` runs, then
    /// shuts them down gracefully.
    static func withRunningPool(_ system: FlashSystem, _ body: @Sendable (ServiceGroup) async throws -> Void) async throws {
        let group = ServiceGroup(configuration: .init(services: [system.workers!, system.reconciler], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                try await body(group)
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    /// Polls `condition` until it holds; records an issue if it still does not after `timeout`.
    func expectEventually(timeout: Duration = .seconds(20), sourceLocation: SourceLocation = #_sourceLocation,
                          _ condition: @Sendable () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        if try await !condition() { Issue.record("condition not met within \(timeout)", sourceLocation: sourceLocation) }
    }

    @Test func processesEveryOrderAndChargesEachExactlyOnce() async throws {
        let system = try await FlashSystem.open(Self.configuration(workers: 5, latency: .milliseconds(10)), logger: Self.logger)
        var ids: [String] = []
        for n in 0..<60 { ids.append(try await system.store.placeQueued(Self.order(n)).order.id) }
        try await Self.withRunningPool(system) { _ in
            try await expectEventually { try await system.store.counts().completed == 60 }
        }
        let ledger = try await system.ledger.entries()
        #expect(Set(ledger.keys) == Set(ids))
        #expect(ledger.values.allSatisfy { $0.outcome.isApproved && $0.amount == 10 })
        #expect(try await system.paymentsQueue.statistics().total == 0)
        let order = try #require(try await system.store.order(id: ids[0]))
        #expect(order.status == .completed)
        #expect(order.attempts == 1)
        try await system.close()
    }

    @Test func aDeliveryLostWithItsWorkerComesBackAfterTheLease() async throws {
        let system = try await FlashSystem.open(Self.configuration(workers: 2, latency: .milliseconds(10), visibility: .milliseconds(300)), logger: Self.logger)
        let id = try await system.store.placeQueued(Self.order(1)).order.id
        // A worker took the message and died without acknowledging it.
        let taken = try await system.paymentsQueue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .milliseconds(300))
        #expect(taken.count == 1)
        try await Self.withRunningPool(system) { _ in
            try await expectEventually { try await system.store.order(id: id)?.status == .completed }
        }
        #expect(try await system.ledger.entries().count == 1)
        try await system.close()
    }

    @Test func aChargeDecidedBeforeACrashIsNotTakenAgain() async throws {
        let system = try await FlashSystem.open(Self.configuration(workers: 2, latency: .milliseconds(10)), logger: Self.logger)
        let placed = try await system.store.placeQueued(Self.order(1, price: 25))
        // The process charged this order, then was killed before recording the result.
        _ = try await system.services.gateway.charge(orderID: placed.order.id, amount: 25)
        try await Self.withRunningPool(system) { _ in
            try await expectEventually { try await system.store.order(id: placed.order.id)?.status == .completed }
        }
        #expect(try await system.ledger.entries().count == 1)
        #expect(try await system.services.gateway.statistics().duplicateChargesPrevented == 1)
        #expect(try await system.services.gateway.statistics().charges == 1)
        try await system.close()
    }

    @Test func heartbeatKeepsALongChargeLeased() async throws {
        // Real durations on both sides, by nature: the heartbeat's timer against the queue's
        // lease. The allowance is generous: a 5 s lease is extended every 2.5 s, so each beat may
        // come up to 2.5 s late (a starved timer, a write waiting its turn) before the lease
        // lapses; the pool counts the lease from before its receive, so a slow receive does not
        // eat into that. The 12 s charge outlasts the lease twice over: without the heartbeat the
        // lease lapses (at 5 s and 10 s) and the fetcher, always long-polling for one job to keep
        // ready, takes the message again.
        let system = try await FlashSystem.open(Self.configuration(workers: 1, latency: .seconds(12), visibility: .seconds(5)), logger: Self.logger)
        let id = try await system.store.placeQueued(Self.order(1)).order.id
        try await Self.withRunningPool(system) { _ in
            // A deadline only for a machine that never gets there (the charge itself takes 12 s).
            try await expectEventually(timeout: .seconds(60)) { try await system.store.order(id: id)?.status == .completed }
        }
        // A second delivery would have counted a second attempt (and its charge, answered from
        // the ledger, a duplicate prevented).
        #expect(try await system.store.order(id: id)?.attempts == 1)
        #expect(try await system.services.gateway.statistics().duplicateChargesPrevented == 0)
        try await system.close()
    }

    @Test func transientFailuresEndInTheDeadLetterQueueAndFailTheOrder() async throws {
        var config = Self.configuration(workers: 2, latency: .milliseconds(5))
        config.payment.transientErrorRate = 1
        config.queue.maxReceives = 3
        let system = try await FlashSystem.open(config, logger: Self.logger)
        let id = try await system.store.placeQueued(Self.order(1)).order.id
        try await Self.withRunningPool(system) { _ in
            try await expectEventually { try await system.store.order(id: id)?.status == .failed }
        }
        let order = try #require(try await system.store.order(id: id))
        // Settled by whichever reconciler path saw it first: the dead-letter loop, or the orphan
        // scan, for which a dead-lettered message is one that is gone (OrphanReason.messageGone).
        let reason = order.failureReason ?? ""
        #expect(reason.contains("dead-lettered") || reason.contains(OrphanReason.messageGone.rawValue), "\(reason)")
        #expect(order.attempts == 3)
        #expect(try await system.paymentsQueue.statistics().deadLettered == 1)
        // Failed only after the gateway confirmed no charge, and voided it so none can follow.
        #expect(try await system.ledger.entries()[id]?.outcome == .voided)
        #expect(try await system.services.gateway.statistics().charges == 0)
        // Its history: each failed attempt with the gateway's error, and who settled it (each
        // event is written just after what it tells of).
        try await expectEventually {
            let events = try await system.store.events(of: id, limit: 50)
            return events.count { $0.kind == .attemptFailed } == 3 && events.contains { $0.kind == .settled }
        }
        let events = try await system.store.events(of: id, limit: 50)
        let failures = events.filter { $0.kind == .attemptFailed }
        #expect(failures.map(\.detail).allSatisfy { $0.contains("failed: ") && $0.contains("tried again after") }, "\(failures)")
        #expect(failures.allSatisfy { $0.actor.hasPrefix("a worker in process ") }, "\(failures)")
        let settled = try #require(events.first { $0.kind == .settled })
        #expect(settled.actor.hasPrefix("the reconciler in process ") && settled.detail.hasPrefix("failed: "), "\(settled)")
        let history = order.history(with: events)
        #expect(history.first?.kind == "placed" && history.last?.kind == "failed" && history.last?.actor == settled.actor, "\(history)")
        #expect(history.map(\.at) == history.map(\.at).sorted())
        try await system.close()
    }

    @Test func anUndecodableMessageIsDeadLetteredAndTheRestGoOn() async throws {
        let system = try await FlashSystem.open(Self.configuration(workers: 2, latency: .milliseconds(5)), logger: Self.logger)
        _ = try await system.paymentsQueue.send("this is not an order")
        let id = try await system.store.placeQueued(Self.order(1)).order.id
        try await Self.withRunningPool(system) { _ in
            try await expectEventually { try await system.store.order(id: id)?.status == .completed }
            try await expectEventually { try await system.paymentsQueue.statistics().deadLettered == 1 }
        }
        try await system.close()
    }

    @Test func gracefulShutdownFinishesChargesInProgressAndGivesBackTheRest() async throws {
        let system = try await FlashSystem.open(Self.configuration(workers: 0, latency: .milliseconds(5)), logger: Self.logger)
        for n in 0..<6 { _ = try await system.store.placeQueued(Self.order(n)) }
        // The two charges last until the test opens the gate, which it does only once shutdown
        // has given the buffered messages back: no charge can end (and its worker take another
        // order) before the pool has stopped handing out work, however slow the machine.
        let gateway = GatedGateway(system.services.gateway)
        let pool = Self.pool(system, charging: gateway)
        let group = ServiceGroup(configuration: .init(services: [pool], logger: Self.logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await Self.waitForTwoChargesAndTwoBuffered(pool, system)
            await group.triggerGracefulShutdown()
            // The two buffered messages are given back while both charges are still held.
            try await expectEventually(timeout: .seconds(60)) {
                let queue = try await system.paymentsQueue.statistics()
                return queue.visible == 4 && queue.inFlight == 2
            }
            #expect(pool.busy == 2)
            gateway.open()
            try await tasks.waitForAll()
        }
        // The two charges in progress finished; the four others are back in the queue, untouched.
        let counts = try await system.store.counts()
        #expect(counts.completed == 2)
        #expect(try await system.ledger.entries().count == 2)
        let queue = try await system.paymentsQueue.statistics()
        #expect(queue.visible == 4)
        #expect(queue.inFlight == 0)
        try await system.close()
        // After a restart everything completes, each order charged once.
        let restarted = try await FlashSystem.open(Self.configuration(workers: 4, latency: .milliseconds(5)).with(path: system.configuration.backend.path), logger: Self.logger)
        try await Self.withRunningPool(restarted) { _ in
            try await expectEventually(timeout: .seconds(60)) { try await restarted.store.counts().completed == 6 }
        }
        #expect(try await restarted.ledger.entries().count == 6)
        try await restarted.close()
    }

    @Test func shutdownDeadlineAbandonsAChargeAndGivesItsMessageBack() async throws {
        var config = Self.configuration(workers: 1, latency: .seconds(30))
        config.workers.shutdownDeadline = .milliseconds(200)
        let system = try await FlashSystem.open(config, logger: Self.logger)
        let id = try await system.store.placeQueued(Self.order(1)).order.id
        let group = ServiceGroup(configuration: .init(services: [system.workers!], logger: Self.logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await expectEventually { system.workers!.busy == 1 }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(try await system.paymentsQueue.statistics().visible == 1)
        #expect(try await system.store.order(id: id)?.status != .completed)
        try await system.close()
        // The gateway may have decided the abandoned charge; after a restart the order completes
        // and the ledger still holds one charge for it.
        let restarted = try await FlashSystem.open(Self.configuration(workers: 1, latency: .milliseconds(5)).with(path: config.backend.path), logger: Self.logger)
        try await Self.withRunningPool(restarted) { _ in
            try await expectEventually { try await restarted.store.order(id: id)?.status == .completed }
        }
        #expect(try await restarted.ledger.entries().count == 1)
        try await restarted.close()
    }
}

extension WorkerPoolTests {
    /// A gateway whose charges are decided (the simulator's ledger written) and then held until
    /// the test opens the gate: how long a charge lasts is an event the test controls, not a
    /// latency. A charge cancelled while held throws `CancellationError` (decided, unanswered).
    final class GatedGateway: PaymentGateway {
        let inner: any PaymentGateway
        private let opened = Mutex(false)

        init(_ inner: any PaymentGateway) { self.inner = inner }

        /// Lets the held charges answer, and every later one at once.
        func open() { opened.withLock { $0 = true } }

        func charge(orderID: String, amount: Double) async throws -> PaymentOutcome {
            let outcome = try await inner.charge(orderID: orderID, amount: amount)
            while !opened.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
            return outcome
        }

        func finalOutcome(orderID: String) async throws -> PaymentOutcome { try await inner.finalOutcome(orderID: orderID) }
        func statistics() async throws -> PaymentStatistics { try await inner.statistics() }
        var expectedLatency: Duration { inner.expectedLatency }
    }

    /// A pool of two workers over `system`'s store, charging through `gateway` (the system wires
    /// its own pool to the simulator). Its leases (10 min) cannot lapse, nor its shutdown
    /// deadline (60 s) pass, while a test waits on its events: only a machine that never gets
    /// there meets either.
    static func pool(_ system: FlashSystem, charging gateway: GatedGateway) -> WorkerPool {
        WorkerPool(configuration: .init(workers: 2, visibilityTimeout: .seconds(600), retryBackoff: .milliseconds(10),
                                        shutdownDeadline: .seconds(60)),
                   store: system.store, gateway: gateway, logger: logger)
    }

    /// Waits until both workers charge (held at the gate) and the fetcher has filled the prefetch
    /// buffer: a pool of two keeps two jobs ready, so four messages are leased.
    static func waitForTwoChargesAndTwoBuffered(_ pool: WorkerPool, _ system: FlashSystem,
                                                sourceLocation: SourceLocation = #_sourceLocation) async throws {
        try await WorkerPoolTests().expectEventually(timeout: .seconds(60), sourceLocation: sourceLocation) {
            guard pool.busy == 2 else { return false }
            return try await system.paymentsQueue.statistics().inFlight == 4
        }
    }
}

extension FlashConfiguration {
    func with(path: String) -> FlashConfiguration {
        var copy = self
        copy.backend.path = path
        return copy
    }
}

@Suite("Worker pool: deliveries that count")
struct UntriedDeliveryTests {
    @Test func messagesGivenBackFromThePrefetchBufferAtShutdownKeepTheirDeliveries() async throws {
        var config = WorkerPoolTests.configuration(workers: 0, latency: .milliseconds(5))
        config.queue.maxReceives = 1
        let system = try await FlashSystem.open(config, logger: WorkerPoolTests.logger)
        for n in 0..<10 { _ = try await system.store.placeQueued(WorkerPoolTests.order(n)) }
        // The two charges are held until shutdown has given the buffer back (see
        // gracefulShutdownFinishesChargesInProgressAndGivesBackTheRest): exactly two are charged.
        let gateway = WorkerPoolTests.GatedGateway(system.services.gateway)
        let pool = WorkerPoolTests.pool(system, charging: gateway)
        // Its size is known before it runs: the fleet's first heartbeat reports it.
        #expect(pool.workerCount == 2)
        // In FlashSystem's order: the pool last, so it is the first to stop.
        let group = ServiceGroup(configuration: .init(services: [system.reconciler, pool], logger: WorkerPoolTests.logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await WorkerPoolTests.waitForTwoChargesAndTwoBuffered(pool, system)
            await group.triggerGracefulShutdown()
            try await WorkerPoolTests().expectEventually(timeout: .seconds(60)) {
                let queue = try await system.paymentsQueue.statistics()
                return queue.visible == 8 && queue.inFlight == 2
            }
            #expect(pool.busy == 2)
            gateway.open()
            try await tasks.waitForAll()
        }
        // Two charged; the rest (buffered ones included) are back, untried: pending, no attempt.
        let counts = try await system.store.counts()
        #expect(counts.completed == 2)
        #expect(counts.pending == 8)
        #expect(try await system.paymentsQueue.statistics().visible == 8)
        try await system.close()
        // With --max-receives 1, a counted give-back would dead-letter them on the next receive.
        let restarted = try await FlashSystem.open(
            WorkerPoolTests.configuration(workers: 4, latency: .milliseconds(5)).with(path: config.backend.path).with(maxReceives: 1),
            logger: WorkerPoolTests.logger)
        try await WorkerPoolTests.withRunningPool(restarted) { _ in
            try await WorkerPoolTests().expectEventually(timeout: .seconds(60)) { try await restarted.store.counts().completed == 10 }
        }
        #expect(try await restarted.paymentsQueue.statistics().deadLettered == 0)
        #expect(try await restarted.ledger.entries().count == 10)
        try await restarted.close()
    }
}

@Suite("Worker pool: a charge that never reached the gateway")
struct NotSentChargeTests {
    @Test func aChargeStillWaitingForTheGatewaysSlotAtTheHardStopGoesBackUntried() async throws {
        var config = WorkerPoolTests.configuration(workers: 2, latency: .seconds(30))
        config.payment.concurrencyLimit = 1
        config.workers.shutdownDeadline = .milliseconds(200)
        config.queue.maxReceives = 1
        let system = try await FlashSystem.open(config, logger: WorkerPoolTests.logger)
        let first = try await system.store.placeQueued(WorkerPoolTests.order(1)).order.id
        let second = try await system.store.placeQueued(WorkerPoolTests.order(2)).order.id
        let group = ServiceGroup(configuration: .init(services: [system.workers!, system.reconciler], logger: WorkerPoolTests.logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            // One charge holds the gateway's only slot; the other waits at its door.
            try await WorkerPoolTests().expectEventually {
                let decided = try await system.ledger.entries().count
                return system.workers!.busy == 2 && decided == 1
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        try await system.close()
        let restarted = try await FlashSystem.open(
            WorkerPoolTests.configuration(workers: 2, latency: .milliseconds(5)).with(path: config.backend.path).with(maxReceives: 1),
            logger: WorkerPoolTests.logger)
        try await WorkerPoolTests.withRunningPool(restarted) { _ in
            try await WorkerPoolTests().expectEventually { try await restarted.store.counts().completed == 2 }
        }
        // The decided charge's delivery counted (dead-lettered, then settled as charged); the
        // one that never reached the gateway did not: it was simply charged after the restart.
        #expect(try await restarted.paymentsQueue.statistics().deadLettered == 1)
        #expect(try await restarted.store.order(id: first)?.status == .completed)
        let order = try #require(try await restarted.store.order(id: second))
        #expect(order.status == .completed)
        #expect(order.attempts == 1)
        #expect(try await restarted.ledger.entries().count == 2)
        try await restarted.close()
    }
}

extension FlashConfiguration {
    func with(maxReceives: Int) -> FlashConfiguration {
        var copy = self
        copy.queue.maxReceives = maxReceives
        return copy
    }
}
