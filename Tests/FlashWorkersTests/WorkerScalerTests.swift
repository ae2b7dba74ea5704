import FlashCore
import FlashQueue
import FlashServer
@testable import FlashWorkers
import ServiceLifecycle
import Testing

/// The worker controller as a state machine on made-up instants, alone and driving a simulated
/// pool (``PoolSimulation``): nothing sleeps and nothing depends on the machine's speed.
@Suite("Worker scaler")
struct WorkerScalerTests {
    /// The seeds' numbers: 3 s payments, orders should wait at most 5 s to start.
    let seeds = WorkerScaler.Configuration(minWorkers: 1, maxWorkers: 1_000, targetWait: .seconds(5),
                                           scaleDownWindow: .seconds(30), expectedServiceTime: .seconds(3))

    /// The longest wait before a charge starts, among the samples in `range` (seconds).
    func longestWait(_ result: PoolSimulation.Result, service: Double, in range: ClosedRange<Double>) -> Double {
        result.samples.filter { range.contains($0.time) }.map { max(0, $0.oldestAgeSeconds - service) }.max() ?? 0
    }

    func workers(_ result: PoolSimulation.Result, in range: ClosedRange<Double>) -> [Int] {
        result.samples.filter { range.contains($0.time) }.map(\.workers)
    }

    @Test func aStepIsCarriedAfterAShortRampAndThePoolReturnsToItsMinimumAfterIt() {
        // 0 → 60/s for 120 s → 0: Little's law says 180 workers.
        let result = PoolSimulation(scaler: seeds, serviceTime: 3).run(.rate { $0 < 120 ? 60 : 0 }, duration: 120, through: 180)
        #expect(result.completed == result.arrived)
        #expect(result.arrived == 7_200)
        // The ramp: within 15 s the oldest order waits less than the target, and stays so.
        #expect(longestWait(result, service: 3, in: 15...120) <= 5)
        // The steady state carries the need without running far above it.
        let steady = workers(result, in: 60...120)
        #expect(steady.min()! >= 180)
        #expect(steady.max()! <= 240, "steady workers \(steady.min()!)...\(steady.max()!)")
        // Down only after the window, then to the minimum.
        #expect(workers(result, in: 121...145).min()! >= 180)
        #expect(result.samples.last!.workers == 1)
        #expect(workers(result, in: 170...180).allSatisfy { $0 == 1 })
    }

    @Test func aSpikeIsAbsorbedQuicklyWithoutTheMaximum() {
        // 10/s, then 100/s for 5 s, then 10/s again.
        let result = PoolSimulation(scaler: seeds, serviceTime: 3).run(.rate { (30..<35).contains($0) ? 100 : 10 }, duration: 120)
        #expect(result.completed == result.arrived)
        // Two samples (0.5 s) into the spike the pool has grown past what 10/s needs many times over.
        #expect(workers(result, in: 30.6...31).max()! > 150)
        // The spike's backlog has waited at most a little over the target, and is gone 15 s later.
        #expect(longestWait(result, service: 3, in: 30...120) <= 7)
        #expect(longestWait(result, service: 3, in: 50...120) <= 5)
        #expect(result.peakWorkers < 1_000)
        // Then back to what 10/s needs (30), after the window.
        #expect((28...45).contains(result.samples.last!.workers), "\(result.samples.last!.workers)")
    }

    @Test func sparseArrivalsDoNotMakeThePoolFlap() {
        // One order every 7 s for ten minutes.
        let instants = stride(from: 1.0, to: 600, by: 7).map { $0 }
        let result = PoolSimulation(scaler: seeds, serviceTime: 3).run(.instants(instants), duration: 600)
        #expect(result.completed == instants.count)
        let counts = workers(result, in: 60...600)
        var changes = 0
        for (a, b) in zip(counts, counts.dropFirst()) where a != b { changes += 1 }
        #expect(changes <= 2, "the pool changed size \(changes) times: \(Set(counts).sorted())")
        #expect(counts.max()! <= 5)
        #expect(longestWait(result, service: 3, in: 0...600) <= 5)
    }

    @Test func aGatewayThatQueuesBeyondItsLimitIsNotGivenMoreWorkers() {
        // The gateway serves 50 charges at once (50/s at 1 s each); 100/s arrive for a minute.
        let config = WorkerScaler.Configuration(minWorkers: 1, maxWorkers: 1_000, targetWait: .seconds(2),
                                                scaleDownWindow: .seconds(20), expectedServiceTime: .seconds(1))
        let result = PoolSimulation(scaler: config, serviceTime: 1, gatewayLimit: .queues(50)).run(.rate { $0 < 60 ? 100 : 0 }, duration: 60)
        // Without the limit's detection Little's law would ask for hundreds (the service time
        // rises with every worker added); the pool stays near what the gateway carries.
        let held = workers(result, in: 20...60)
        #expect(held.max()! <= 120, "workers \(held.min()!)...\(held.max()!)")
        #expect(held.min()! >= 40)
        #expect(result.completed == result.arrived)
    }

    @Test func aGatewayThatRefusesBeyondItsLimitMakesThePoolBackOff() {
        let config = WorkerScaler.Configuration(minWorkers: 1, maxWorkers: 1_000, targetWait: .seconds(2),
                                                scaleDownWindow: .seconds(20), expectedServiceTime: .seconds(1))
        let result = PoolSimulation(scaler: config, serviceTime: 1, gatewayLimit: .refuses(50)).run(.rate { $0 < 60 ? 100 : 0 }, duration: 60)
        let held = workers(result, in: 20...60)
        #expect(held.max()! <= 110, "workers \(held.min()!)...\(held.max()!)")
        // It backs off, and hammers less than it would at the need: refusals stay a fraction of the charges.
        #expect(Double(result.refused) < 0.5 * Double(result.completed), "\(result.refused) refused, \(result.completed) completed")
        #expect(result.completed == result.arrived)
    }

    @Test func twoProcessesTogetherRunTheNeedOnceNotTwice() {
        let one = PoolSimulation(scaler: seeds, serviceTime: 3).run(.rate { _ in 60 }, duration: 120)
        let two = PoolSimulation(scaler: seeds, serviceTime: 3, processes: 2).run(.rate { _ in 60 }, duration: 120)
        let single = Double(workers(one, in: 60...120).max()!)
        let fleet = Double(workers(two, in: 60...120).max()!)
        #expect(fleet <= single * 1.1, "one process \(single), two together \(fleet)")
        #expect(fleet >= 180)
    }

    @Test func workersAlreadyAddedCountAsCapacityAndBoundsHold() {
        var scaler = WorkerScaler(configuration: .init(minWorkers: 2, maxWorkers: 100, targetWait: .seconds(5),
                                                       scaleDownWindow: .seconds(30), expectedServiceTime: .seconds(1)))
        #expect(scaler.decision.workers == 2)
        // 200 waiting, nothing in flight yet: 1 s × 200 / 5 s = 40.
        let first = scaler.observe(.init(visible: 200, inFlight: 0, oldestAgeSeconds: 0.1, charges: 0, chargeSeconds: 0, busy: 0), at: .seconds(1))
        #expect(first.workers == 40)
        // The same picture again (the new workers are still starting): the answer stands, not 80.
        let again = scaler.observe(.init(visible: 200, inFlight: 0, oldestAgeSeconds: 0.4, charges: 0, chargeSeconds: 0, busy: 0), at: .seconds(1.25))
        #expect(again.workers == 40)
        // Far more than the maximum would need: capped.
        let flood = scaler.observe(.init(visible: 100_000, inFlight: 0, oldestAgeSeconds: 0.6, charges: 0, chargeSeconds: 0, busy: 0), at: .seconds(1.5))
        #expect(flood.workers == 100)
        #expect(flood.fleetNeed > 10_000)
        #expect(flood.recommendedProcesses == (flood.fleetNeed + 99) / 100)
        // Nothing at all, long after: the minimum.
        let idle = scaler.observe(.init(visible: 0, inFlight: 0, oldestAgeSeconds: 0, charges: 0, chargeSeconds: 0, busy: 0), at: .seconds(100))
        #expect(idle.workers == 2)
        #expect(idle.fleetNeed == 0)
    }

    @Test func aGatewayThatIsSlowerForGoodBecomesTheNewBaseline() {
        var scaler = WorkerScaler(configuration: .init(minWorkers: 1, maxWorkers: 1_000, targetWait: .seconds(4),
                                                       scaleDownWindow: .seconds(10), expectedServiceTime: .seconds(1)))
        var time = 0.0
        func sample(_ seconds: Double, busy: Int) -> WorkerScaler.Decision {
            time += 1
            return scaler.observe(.init(visible: 0, inFlight: busy, oldestAgeSeconds: seconds, charges: busy, chargeSeconds: Double(busy) * seconds,
                                        busy: busy), at: .seconds(time))
        }
        for _ in 0..<5 { _ = sample(1, busy: 20) }
        // Three times slower at any concurrency: first taken for the gateway's limit …
        let limited = sample(3, busy: 20)
        #expect(limited.gatewayCeiling != nil)
        // … then, as slow at the lower concurrency for a window, for the gateway's new pace.
        var last = limited
        for _ in 0..<15 { last = sample(3, busy: min(20, last.workers)) }
        #expect(last.gatewayCeiling == nil)
        #expect(last.serviceSeconds > 2.5)
    }
}

/// The dispatcher retires workers between jobs, never during one.
@Suite("Work dispatcher resizing")
struct WorkDispatcherResizeTests {
    func job(_ id: Int) -> Job {
        Job(message: ReceivedMessage(messageID: "m\(id)", receiptHandle: ReceiptHandle("r\(id)"), body: "{}", receiveCount: 1, sentAtMillis: 0,
                                     firstReceivedAtMillis: 0),
            order: nil, orderID: "o\(id)", leasedAt: .now)
    }

    @Test func aWorkerAboveTheNewSizeFinishesItsJobAndRetiresOnlyThen() async {
        let dispatcher = WorkDispatcher()
        #expect(dispatcher.resize(to: 2).start == 2)
        let wanted = await dispatcher.demand()
        #expect(wanted >= 2)
        #expect(dispatcher.deliver([job(1), job(2)], reserved: wanted).isEmpty)
        // Both workers hold a job; the pool shrinks to one.
        let first = await dispatcher.next()
        let second = await dispatcher.next()
        #expect(first?.orderID == "o1" && second?.orderID == "o2")
        #expect(dispatcher.resize(to: 1).start == 0)
        // Their jobs are untouched; the first to ask again retires, the other gets work.
        #expect(await dispatcher.next() == nil)
        #expect(dispatcher.deliver([job(3)], reserved: 0).isEmpty)
        #expect(await dispatcher.next()?.orderID == "o3")
        // Growing again starts only the missing ones.
        #expect(dispatcher.resize(to: 3).start == 2)
        dispatcher.close()
    }

    @Test func shrinkingHandsBackTheBufferBeyondTheSmallerPoolsPrefetch() async {
        // A pool of 200 keeps 40 jobs ready; shrunk to 5, it keeps 5 (prefetch of at most the
        // pool) and hands the rest back to be returned untried, not left to outwait their leases.
        let dispatcher = WorkDispatcher()
        #expect(dispatcher.resize(to: 200).start == 200)
        #expect(WorkDispatcher.prefetch(forWorkers: 200) == 40)
        var delivered = 0
        while delivered < 40 {
            let wanted = await dispatcher.demand()
            #expect(dispatcher.deliver((0..<wanted).map { job(delivered + $0) }, reserved: wanted).isEmpty)
            delivered += wanted
        }
        #expect(dispatcher.buffered == 40)
        let (start, excess) = dispatcher.resize(to: 5)
        #expect(start == 0)
        #expect(excess.count == 35)
        #expect(dispatcher.buffered == 5)
        // The oldest stay (they were received first); the newest go back.
        #expect(Set(excess.compactMap(\.orderID)) == Set((5..<40).map { "o\($0)" }))
        dispatcher.close()
        #expect(dispatcher.takeReturned().count == 5)
    }
}

/// A delivery that waited in the buffer past its lease, and that another consumer received
/// meanwhile, is not charged: its lease is renewed before the charge, and cannot be.
@Suite("Buffered deliveries past their lease")
struct BufferedLeaseTests {
    @Test func aBufferedDeliveryTakenByAnotherConsumerIsNotCharged() async throws {
        let lease = Duration.seconds(6)
        let system = try await FlashSystem.open(WorkerPoolTests.configuration(workers: 0, latency: .milliseconds(5), visibility: lease),
                                                logger: WorkerPoolTests.logger)
        for n in 0..<4 { _ = try await system.store.placeQueued(WorkerPoolTests.order(n)) }
        let gateway = WorkerPoolTests.GatedGateway(system.services.gateway)
        // Two workers: two charges held at the gate, two deliveries buffered.
        let pool = WorkerPool(configuration: .init(workers: 2, visibilityTimeout: lease, retryBackoff: .milliseconds(10),
                                                   shutdownDeadline: .seconds(60)),
                              store: system.store, gateway: gateway, logger: WorkerPoolTests.logger)
        let group = ServiceGroup(configuration: .init(services: [pool], logger: WorkerPoolTests.logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await WorkerPoolTests.waitForTwoChargesAndTwoBuffered(pool, system)
            #expect(pool.dispatcher.buffered == 2)
            // The buffered two outwait their lease (the held charges' leases are kept by their
            // heartbeats), and another consumer receives them.
            try await WorkerPoolTests().expectEventually(timeout: .seconds(60)) {
                try await system.paymentsQueue.statistics().visible == 2
            }
            let taken = try await system.paymentsQueue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(600))
            #expect(taken.count == 2)
            gateway.open()
            // The held charges finish; the buffered jobs reach the workers and are dropped.
            try await WorkerPoolTests().expectEventually(timeout: .seconds(60)) {
                guard pool.dispatcher.buffered == 0, pool.busy == 0 else { return false }
                return try await system.store.counts().completed == 2
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        // Only the two held orders were charged; the other consumer still holds the rest.
        #expect(try await system.ledger.entries().count == 2)
        let counts = try await system.store.counts()
        #expect(counts.completed == 2)
        #expect(counts.processing == 2)
        #expect(try await system.paymentsQueue.statistics().inFlight == 2)
        try await system.close()
    }
}
