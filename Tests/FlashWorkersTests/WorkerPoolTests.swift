import FlashCore
import FlashOrders
import FlashPayments
import FlashQueue
import FlashServer
import Foundation
import Logging
import ServiceLifecycle
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
        let system = try await FlashSystem.open(Self.configuration(workers: 1, latency: .milliseconds(2500), visibility: .seconds(1)), logger: Self.logger)
        let id = try await system.store.placeQueued(Self.order(1)).order.id
        try await Self.withRunningPool(system) { _ in
            try await expectEventually { try await system.store.order(id: id)?.status == .completed }
        }
        // Without the heartbeat the 1 s lease would lapse twice during the 2.5 s charge.
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
        let system = try await FlashSystem.open(Self.configuration(workers: 2, latency: .milliseconds(600)), logger: Self.logger)
        for n in 0..<6 { _ = try await system.store.placeQueued(Self.order(n)) }
        let group = ServiceGroup(configuration: .init(services: [system.workers!], logger: Self.logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await expectEventually { system.workers!.busy == 2 }
            await group.triggerGracefulShutdown()
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
            try await expectEventually { try await restarted.store.counts().completed == 6 }
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
        var config = WorkerPoolTests.configuration(workers: 2, latency: .milliseconds(600))
        config.queue.maxReceives = 1
        let system = try await FlashSystem.open(config, logger: WorkerPoolTests.logger)
        for n in 0..<10 { _ = try await system.store.placeQueued(WorkerPoolTests.order(n)) }
        // In FlashSystem's order: the pool last, so it is the first to stop.
        let group = ServiceGroup(configuration: .init(services: [system.reconciler, system.workers!], logger: WorkerPoolTests.logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await WorkerPoolTests().expectEventually { system.workers!.busy == 2 }
            await group.triggerGracefulShutdown()
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
            try await WorkerPoolTests().expectEventually { try await restarted.store.counts().completed == 10 }
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
