import FlashBackend
import FlashCore
import FlashOrders
import FlashPayments
import FlashQueue
import Logging
import ServiceLifecycle
import Synchronization

/// The pool of payment workers: a Service that drains the `payments` queue at the gateway's pace.
///
/// W workers each charge one order at a time. Fetchers long-poll the queue in batches of up to
/// 10, sized to the idle workers (see `WorkDispatcher`), and mark the batch's orders processing.
/// A worker charges, then records the result and deletes the message while it already charges
/// the next order. A charge that runs past half the lease extends the lease (heartbeat).
/// A transient gateway error gives the message back after an exponential backoff; past the
/// queue's maxReceiveCount the queue dead-letters it, and the ``Reconciler`` settles the order
/// by the rule of final states. An undecodable message is given back at once until the queue
/// dead-letters it.
///
/// An outage is not the order's fault, and spends none of its deliveries: when the store or the
/// gateway fails and a probe that costs no order says it is away (``CircuitBreaker``), the
/// fetchers stop receiving, charges that failed with it go back untried, workers start no charge
/// from the buffer, and the pool resumes by itself once the probe answers. Orders delayed by an
/// outage of any length are charged when it ends; only an order that fails while its
/// dependencies answer (a poison order) is dead-lettered.
///
/// A delivery counts against maxReceiveCount only if it was tried: messages received but never
/// started (the prefetch buffer at shutdown) go back *untried*, their delivery and the order's
/// attempt uncounted (``OrderStore/returnUntried(_:)``). A kill -9
/// cannot give anything back: those deliveries count, as SQS counts them.
///
/// Graceful shutdown: stop receiving, give back buffered messages untried, let charges in
/// progress finish until ``Configuration/shutdownDeadline``, then give back the rest (tried).
///
/// Elastic (``Configuration/scaling``): every ``WorkerScaler/Configuration/interval`` the pool
/// samples the queue, its own charges and the live worker processes, and runs as many workers
/// as ``WorkerScaler`` answers. Workers are added at once and retired between jobs, never
/// during a charge. A fixed pool samples too (once a second) and only reports what the
/// controller would run (``scaling``), for `/metrics` and outside autoscalers.
public final class WorkerPool: Service {
    /// The rest of the fleet, as an elastic pool's controller sees it.
    public struct FleetShare: Sendable {
        /// Live processes running payment workers, this one included.
        public var processes: Int
        /// The other processes' workers charging, as of their last heartbeats.
        public var othersBusy: Int

        public init(processes: Int = 1, othersBusy: Int = 0) {
            self.processes = processes
            self.othersBusy = othersBusy
        }
    }

    /// The pool's settings.
    public struct Configuration: Sendable {
        /// Concurrent charges (W).
        public var workers: Int
        /// The lease taken on each delivery.
        public var visibilityTimeout: Duration
        /// First backoff after a transient error; doubles each delivery.
        public var retryBackoff: Duration
        /// Longest backoff.
        public var maxRetryBackoff: Duration
        /// How long shutdown waits for charges in progress.
        public var shutdownDeadline: Duration
        /// Long-poll wait of each receive.
        public var receiveWait: Duration
        /// While the store or the gateway is away: the first probe comes this long after the
        /// failure that found it away; each failed probe doubles the interval, up to `longestProbe`.
        public var firstProbe: Duration
        /// The longest interval between probes of a dependency that is away.
        public var longestProbe: Duration
        /// Elastic sizing: nil for a fixed pool of ``workers``; else the pool starts at the
        /// controller's minimum and follows its answers (``workers`` is then ignored).
        public var scaling: WorkerScaler.Configuration?
        /// How often the pool reads whether consuming is paused (``QueuePause``).
        public var pausePoll: Duration = .milliseconds(500)
        /// Who this pool is in an order's history (``OrderEvent/actor``).
        public var actor = "a worker"

        public init(workers: Int, visibilityTimeout: Duration = .seconds(30), retryBackoff: Duration = .milliseconds(500),
                    maxRetryBackoff: Duration = .seconds(60), shutdownDeadline: Duration = .seconds(10),
                    receiveWait: Duration = .seconds(20), firstProbe: Duration = .milliseconds(250), longestProbe: Duration = .seconds(5),
                    scaling: WorkerScaler.Configuration? = nil) {
            self.scaling = scaling
            self.firstProbe = firstProbe
            self.longestProbe = longestProbe
            self.workers = workers
            self.visibilityTimeout = visibilityTimeout
            self.retryBackoff = retryBackoff
            self.maxRetryBackoff = maxRetryBackoff
            self.shutdownDeadline = shutdownDeadline
            self.receiveWait = receiveWait
        }
    }

    public let configuration: Configuration
    /// The store's payments queue: the one this pool reads.
    let queue: any MessageQueue
    let store: any OrderStore
    let gateway: any PaymentGateway
    let logger: Logger
    /// Orders finished (completed or failed) per second.
    public let processed: RateMeter
    let orderMetrics: OrderMetrics
    let dispatcher: WorkDispatcher
    let busyCount = Atomic<Int>(0)
    /// Charges ended since the controller's last sample: count, total seconds, transient failures.
    let charges = Mutex<(count: Int, seconds: Double, errors: Int)>((0, 0, 0))
    /// The controller's latest answer.
    let latest: Mutex<WorkerScaler.Decision?>
    /// The fleet as this pool's controller needs it (from the fleet registry).
    let fleet: @Sendable () async -> FleetShare
    /// Worker loops to start, from ``WorkDispatcher/resize(to:)``.
    let spawns: (stream: AsyncStream<Int>, continuation: AsyncStream<Int>.Continuation)
    let hardStop = ArrivalSignal<Int>()
    let stopping = Atomic<Bool>(false)
    /// Whether consuming is paused for the fleet (nil: never paused).
    let pausedSource: (@Sendable () async throws -> Bool)?
    /// The pause as this pool last read it. A pool that follows a switch starts paused until its
    /// first reading (a process started during a pause takes nothing before it knows).
    let pausedNow: Atomic<Bool>
    /// Open while the order store is away.
    let storeBreaker: CircuitBreaker
    /// Open while the payment gateway is away.
    let gatewayBreaker: CircuitBreaker

    /// A pool that charges the orders of `store`, reading their messages from its payments queue.
    /// `fleet` reads the live processes that run workers (an elastic pool runs its share of
    /// the fleet's need).
    public init(configuration: Configuration, store: any OrderStore, gateway: any PaymentGateway,
                processed: RateMeter = RateMeter(), orderMetrics: OrderMetrics = .none,
                fleet: @escaping @Sendable () async -> FleetShare = { FleetShare() },
                paused: (@Sendable () async throws -> Bool)? = nil, logger: Logger) {
        self.fleet = fleet
        self.pausedSource = paused
        self.pausedNow = Atomic(paused != nil)
        self.spawns = AsyncStream.makeStream(of: Int.self)
        self.latest = Mutex(nil)
        self.orderMetrics = orderMetrics
        self.configuration = configuration
        self.queue = store.paymentsQueue
        self.store = store
        self.gateway = gateway
        self.processed = processed
        self.logger = logger
        self.dispatcher = WorkDispatcher()
        // The store's probe reads one order by key (an id no order has): it needs the database
        // and nothing else. The gateway's charges nothing (its health check).
        self.storeBreaker = CircuitBreaker(name: "database", firstProbe: configuration.firstProbe,
                                           longestProbe: configuration.longestProbe, logger: logger) { [store] in
            _ = try await store.order(id: "flashsale-probe")
        }
        self.gatewayBreaker = CircuitBreaker(name: "gateway", firstProbe: configuration.firstProbe,
                                             longestProbe: configuration.longestProbe, logger: logger) { [gateway] in
            try await gateway.probe()
        }
        // The pool's size from the start (the fleet's heartbeats report it before run() does),
        // its first worker loops queued for run() to start.
        spawns.continuation.yield(dispatcher.resize(to: configuration.scaling.map { max(1, $0.minWorkers) } ?? configuration.workers).start)
    }

    /// The dependencies the pool is waiting out (``CircuitBreaker`` open): "database", "gateway".
    public var waitingFor: [String] {
        [storeBreaker, gatewayBreaker].filter(\.isOpen).map(\.name)
    }

    /// How many times the pool found each dependency away.
    public var outages: [String: Int] {
        [storeBreaker.name: storeBreaker.trips, gatewayBreaker.name: gatewayBreaker.trips]
    }

    /// Workers in the pool now (an elastic pool's latest size).
    public var workerCount: Int { dispatcher.target }

    /// The most workers this pool may run.
    public var maxWorkers: Int { configuration.scaling?.maxWorkers ?? configuration.workers }

    /// The controller's latest answer: what an elastic pool runs, and what a fixed one would
    /// (nil before the first sample).
    public var scaling: WorkerScaler.Decision? { latest.withLock { $0 } }

    /// Workers charging right now.
    public var busy: Int { busyCount.load(ordering: .relaxed) }

    /// Whether this pool has stopped taking deliveries because consuming is paused.
    public var isPaused: Bool { pausedNow.load(ordering: .relaxed) }

    /// Runs until graceful shutdown (or cancellation).
    public func run() async throws {
        let initial = configuration.scaling.map { max(1, $0.minWorkers) } ?? configuration.workers
        guard initial > 0 else {
            try? await gracefulShutdown()
            return
        }
        let fetchers = min(8, max(1, maxWorkers / 50))
        if let scaling = configuration.scaling {
            logger.info("worker pool started", metadata: [
                "workers": "auto", "min_workers": "\(scaling.minWorkers)", "max_workers": "\(scaling.maxWorkers)",
                "target_wait": "\(scaling.targetWait)", "fetchers": "\(fetchers)"])
        } else {
            logger.info("worker pool started", metadata: ["workers": "\(initial)", "fetchers": "\(fetchers)"])
        }
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    // Long polls end at once on graceful shutdown.
                    await cancelWhenGracefulShutdown {
                        await withDiscardingTaskGroup { fetchGroup in
                            for _ in 0..<fetchers { fetchGroup.addTask { await self.fetchLoop() } }
                            fetchGroup.addTask { await self.storeBreaker.probeWhileOpen() }
                            fetchGroup.addTask { await self.gatewayBreaker.probeWhileOpen() }
                            fetchGroup.addTask { await self.scaleLoop() }
                            if self.pausedSource != nil { fetchGroup.addTask { await self.pauseLoop() } }
                        }
                    }
                    await self.stop()
                }
                group.addTask {
                    // Worker loops, started as the pool grows; each ends when it retires or
                    // the pool closes.
                    await withDiscardingTaskGroup { workers in
                        for await count in self.spawns.stream {
                            for _ in 0..<count { workers.addTask { await self.workerLoop() } }
                        }
                    }
                }
                await group.waitForAll()
            }
        } onGracefulShutdown: {
            // No worker starts another job from here on.
            self.dispatcher.close()
            self.spawns.continuation.finish()
        }
        logger.info("worker pool stopped")
    }

    /// Begins a graceful stop (as graceful shutdown does): no more receives, buffered messages
    /// given back untried, charges in progress get ``Configuration/shutdownDeadline`` to finish.
    func stop() async {
        guard !stopping.exchange(true, ordering: .relaxed) else { return }
        dispatcher.close()
        spawns.continuation.finish()
        await returnUntried(dispatcher.takeReturned())
        let deadline = ContinuousClock.now + configuration.shutdownDeadline
        while busy > 0, ContinuousClock.now < deadline {
            do { try await Task.sleep(for: .milliseconds(10)) } catch { break }
        }
        // Charges still running are abandoned: their messages go back to the queue.
        hardStop.notify(0)
    }

    // MARK: Sizing

    /// Samples and resizes every interval until cancelled (graceful shutdown).
    private func scaleLoop() async {
        var scaler = WorkerScaler(configuration: configuration.scaling ?? WorkerScaler.Configuration(
            minWorkers: configuration.workers, maxWorkers: configuration.workers, targetWait: .seconds(5)))
        let interval = configuration.scaling?.interval ?? .seconds(1)
        let start = ContinuousClock.now
        var share = FleetShare()
        var processesReadAt: ContinuousClock.Instant?
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            let statistics: QueueStatistics
            do {
                statistics = try await queue.statistics()
            } catch {
                // A queue that cannot be counted leaves the pool as it is.
                logger.debug("scaling: the queue could not be read", metadata: ["error": "\(error)"])
                continue
            }
            // The fleet's processes change slowly; read them once a second at most.
            if processesReadAt.map({ ContinuousClock.now - $0 >= .seconds(1) }) ?? true {
                share = await fleet()
                processesReadAt = .now
            }
            let ended = charges.withLock { value in
                defer { value = (0, 0, 0) }
                return value
            }
            let decision = scaler.observe(WorkerScaler.Observation(
                visible: statistics.visible, inFlight: statistics.inFlight, delayed: statistics.delayed,
                oldestAgeSeconds: statistics.oldestAgeSeconds,
                charges: ended.count, chargeSeconds: ended.seconds, gatewayErrors: ended.errors,
                busy: busy, othersBusy: share.othersBusy, processes: max(1, share.processes)), at: ContinuousClock.now - start)
            latest.withLock { $0 = decision }
            // Paused, the backlog grows with no charge to serve it: the pool keeps its size,
            // rather than meeting the resume (and the gateway) at its largest.
            guard configuration.scaling != nil, !stopping.load(ordering: .relaxed), !isPaused else { continue }
            let before = dispatcher.target
            if decision.workers != before {
                let (start, excess) = dispatcher.resize(to: decision.workers)
                spawns.continuation.yield(start)
                if !excess.isEmpty {
                    // Given back even if graceful shutdown cancels this loop meanwhile: awaited
                    // at once, in a task of its own that the cancellation does not reach (else
                    // the store would drop the call and the deliveries would count).
                    await Task { await self.returnUntried(excess) }.value
                }
                logger.info("workers resized", metadata: [
                    "from": "\(before)", "to": "\(decision.workers)", "fleet_need": "\(decision.fleetNeed)",
                    "arrivals_per_second": "\(Int(decision.arrivalRate.rounded()))",
                    "service_ms": "\(Int((decision.serviceSeconds * 1000).rounded()))",
                    "waiting": "\(statistics.visible)", "oldest_age_s": "\(statistics.oldestAgeSeconds)",
                    "gateway_ceiling": "\(decision.gatewayCeiling.map(String.init) ?? "-")"])
            }
        }
    }

    // MARK: Pausing

    /// Follows the fleet's pause switch. When it turns on, the deliveries received and not yet
    /// started go back to the queue untried (they would otherwise be charged, or wait out
    /// their leases); the fetchers stop receiving until it turns off.
    private func pauseLoop() async {
        guard let pausedSource else { return }
        var first = true
        while !Task.isCancelled {
            do {
                let paused = try await pausedSource()
                let was = pausedNow.exchange(paused, ordering: .relaxed)
                if first {
                    first = false
                    if paused { logger.notice("consuming is paused: no deliveries are taken until it is resumed") }
                } else if paused, !was {
                    let buffered = dispatcher.takeBuffered()
                    await Task { await self.returnUntried(buffered) }.value
                    logger.notice("consuming paused: no new deliveries are taken; charges in progress finish",
                                  metadata: ["given_back": "\(buffered.count)"])
                } else if !paused, was {
                    logger.notice("consuming resumed")
                }
            } catch {
                // The switch cannot be read: the pool stays as it was.
                logger.debug("the pause switch could not be read", metadata: ["error": "\(error)"])
            }
            do { try await Task.sleep(for: configuration.pausePoll) } catch { return }
        }
    }

    // MARK: Fetching

    private func fetchLoop() async {
        while !Task.isCancelled {
            // Paused: no receive until resumed (checked often: a resume is picked up at once).
            if isPaused {
                do { try await Task.sleep(for: .milliseconds(50)) } catch { return }
                continue
            }
            // No receive while a dependency is away: each would count a delivery toward the
            // dead-letter queue for an order nobody can work on.
            await storeBreaker.waitUntilClosed()
            await gatewayBreaker.waitUntilClosed()
            let wanted = await dispatcher.demand()
            if wanted == 0 { return }
            if isPaused {
                // Paused while waiting for demand: no receive (on SQS a delivery given back
                // still counts toward its receives).
                _ = dispatcher.deliver([], reserved: wanted)
                continue
            }
            if storeBreaker.isOpen || gatewayBreaker.isOpen {
                _ = dispatcher.deliver([], reserved: wanted)
                continue
            }
            let claims: [Claim]
            // The queue starts the leases when it runs the claim: after this instant, before
            // the call returns. Counting from here, the heartbeat is never late, however long
            // the claim took to come back (after a long poll's wait, its first beat merely
            // comes early: one extension more).
            let leasedAt = ContinuousClock.now
            do {
                // The deliveries and their orders' starts, in one transaction where the store
                // holds the queue.
                claims = try await store.claim(maxMessages: wanted, wait: configuration.receiveWait,
                                               visibilityTimeout: configuration.visibilityTimeout)
            } catch {
                // Nothing is claimed: a failed claim leased and started nothing, or gave its
                // deliveries back untried.
                if !(error is CancellationError) {
                    logger.error("claiming deliveries failed", metadata: ["error": "\(error)"])
                    // Away: wait for the probe. Not away (a busy file, a deadlock victim): a
                    // moment before the next claim, not a tight loop.
                    if !(await storeBreaker.isAway(after: error)) { try? await Task.sleep(for: .milliseconds(200)) }
                }
                _ = dispatcher.deliver([], reserved: wanted)
                continue
            }
            let jobs = claims.map { Job(message: $0.message, order: $0.order, orderID: $0.orderID, leasedAt: leasedAt) }
            if isPaused, !jobs.isEmpty {
                // Paused while this claim waited: nothing is tried; the deliveries and the
                // attempts the claim started go back.
                await returnUntried(jobs)
                _ = dispatcher.deliver([], reserved: wanted)
                continue
            }
            await returnUntried(dispatcher.deliver(jobs, reserved: wanted))
        }
    }

    // MARK: Working

    private func workerLoop() async {
        await withDiscardingTaskGroup { acks in
            while let job = await dispatcher.next() {
                let verdict = await work(job)
                // Recording the result overlaps with the next charge.
                acks.addTask { await self.conclude(job, verdict) }
            }
        }
    }

    /// What happened to one job.
    enum Verdict: Sendable {
        case finished(OrderResult)
        case alreadyFinished
        case retry(after: Duration, error: String)
        /// Tried (the charge was sent), then abandoned: back to the queue, the delivery counted.
        case giveBack
        /// Never tried: back to the queue as if not received.
        case untried
        /// Never tried: it waited in the buffer until its lease ran out and another worker
        /// received the message; left to them.
        case leaseLost
        case unusable(String)
    }

    /// Thrown when a job reaches a worker after shutdown's hard stop: its charge was never sent.
    struct NotStarted: Error {}

    private func work(_ job: Job) async -> Verdict {
        guard let orderID = job.orderID else { return .unusable("undecodable message body") }
        guard let order = job.order else { return .unusable("no order \(orderID)") }
        if order.status.isTerminal { return .alreadyFinished }
        // Buffered before the gateway was found away: back, untried, until it answers. Paused:
        // no charge starts once the pool has seen the switch (a worker may take a buffered job
        // while the pause loop gathers the buffer).
        if gatewayBreaker.isOpen || isPaused { return .untried }
        var job = job
        let lease = configuration.visibilityTimeout
        if ContinuousClock.now - job.leasedAt >= lease / 2 {
            // Waited in the buffer past half its lease (a pool that shrank, a slow store): renew
            // it before the charge, so the charge is never sent on a lease that may be gone.
            let renewedAt = ContinuousClock.now
            do {
                try await queue.changeVisibility(job.message.receiptHandle, timeout: lease)
                job.leasedAt = renewedAt
            } catch QueueError.receiptHandleInvalid {
                // Received again by another worker meanwhile: the delivery is theirs.
                logger.warning("a buffered delivery's lease ran out and another took it; left to them",
                               metadata: ["order_id": "\(orderID)", "message_id": "\(job.message.messageID)"])
                return .leaseLost
            } catch {
                // The queue did not answer (the store busy or away): nothing was sent, so the
                // delivery goes back uncounted (if its receipt is still current).
                _ = await storeBreaker.isAway(after: error)
                return .untried
            }
        }
        busyCount.add(1, ordering: .relaxed)
        defer { busyCount.subtract(1, ordering: .relaxed) }
        let started = ContinuousClock.now
        do {
            let outcome = try await chargeWithHeartbeat(job, orderID: orderID, amount: order.total)
            recordCharge(since: started, failed: false)
            return .finished(OrderResult(outcome, voided: "payment voided: the order was settled as never charged"))
        } catch is NotStarted {
            return .untried
        } catch is CancellationError {
            return .giveBack
        } catch {
            if error is TransientPaymentError { recordCharge(since: started, failed: true) }
            if !(error is TransientPaymentError) {
                logger.error("charge failed", metadata: ["order_id": "\(orderID)", "message_id": "\(job.message.messageID)", "error": "\(error)"])
            }
            // If the gateway is away (its health check fails too), the pool stops taking orders.
            // A charge that never reached it (every connection refused) is not the order's
            // fault: it goes back untried, and is charged once the gateway answers. One that may
            // have reached it counts: an order whose charge itself brings the gateway down must
            // still reach the dead-letter queue.
            let away = await gatewayBreaker.isAway(after: error)
            if away, let transient = error as? TransientPaymentError, !transient.reachedGateway { return .untried }
            return .retry(after: backoff(forDelivery: job.message.receiveCount), error: "\(error)")
        }
    }

    /// Counts a charge that ended, for the controller's next sample: an answer's time, or a
    /// transient failure (`failed`; a charge that failed otherwise counts as neither).
    private func recordCharge(since start: ContinuousClock.Instant, failed: Bool) {
        let seconds = (ContinuousClock.now - start).asSeconds
        charges.withLock { value in
            if failed { value.errors += 1 } else { value = (value.count + 1, value.seconds + seconds, value.errors) }
        }
    }

    /// What ended one of a charge's three tasks.
    private enum ChargeEvent: Sendable {
        case charged(Result<PaymentOutcome, Error>)
        case heartbeatFailed(Error)
        case hardStop
    }

    /// Charges while a heartbeat keeps the lease, and stops if shutdown's deadline passes.
    ///
    /// When the heartbeat fails or the hard stop comes, the charge is cancelled and its own end
    /// decides what happened: an outcome that arrived all the same stands; a charge that never
    /// reached the gateway throws ``NotStarted`` (the delivery goes back untried); anything else
    /// throws (the delivery counts, and the gateway's ledger answers the next one).
    private func chargeWithHeartbeat(_ job: Job, orderID: String, amount: Double) async throws -> PaymentOutcome {
        let lease = configuration.visibilityTimeout
        let stopGeneration = hardStop.generation(0)
        if stopping.load(ordering: .relaxed), stopGeneration > 0 { throw NotStarted() }
        return try await withThrowingTaskGroup(of: ChargeEvent?.self) { group in
            group.addTask {
                do {
                    return .charged(.success(try await self.gateway.charge(orderID: orderID, amount: amount)))
                } catch {
                    return .charged(.failure(error))
                }
            }
            group.addTask {
                // Heartbeat: extend the lease whenever half of it has passed.
                var leaseStart = job.leasedAt
                do {
                    while true {
                        try await Task.sleep(until: leaseStart + lease / 2, clock: .continuous)
                        // The new lease starts when the queue runs the call, not when it returns.
                        let extendedAt = ContinuousClock.now
                        try await self.queue.changeVisibility(job.message.receiptHandle, timeout: lease)
                        leaseStart = extendedAt
                    }
                } catch is CancellationError {
                    return nil
                } catch {
                    return .heartbeatFailed(error)
                }
            }
            group.addTask {
                await self.hardStop.wait(0, after: stopGeneration)
                return Task.isCancelled ? nil : .hardStop
            }
            var interruption: Error?
            while let event = try await group.next() {
                switch event {
                case let .charged(.success(outcome)):
                    group.cancelAll()
                    return outcome
                case let .charged(.failure(error)):
                    group.cancelAll()
                    if error is PaymentNotSent { throw NotStarted() }
                    throw interruption ?? error
                case let .heartbeatFailed(error):
                    interruption = error
                    group.cancelAll()
                case .hardStop:
                    interruption = CancellationError()
                    group.cancelAll()
                case nil:
                    continue
                }
            }
            throw interruption ?? CancellationError()
        }
    }

    private func backoff(forDelivery count: Int) -> Duration {
        let exponent = min(20, max(0, count - 1))
        let delay = configuration.retryBackoff * (1 << exponent)
        return min(delay, configuration.maxRetryBackoff)
    }

    /// Concludes a job: carries out its verdict (the order's status, then the message).
    private func conclude(_ job: Job, _ verdict: Verdict) async {
        do {
            switch verdict {
            case let .finished(result):
                try await store.finish(job.orderID!, result: result, deleting: job.message.receiptHandle)
                processed.record()
                orderMetrics.recordFinished(result, by: .worker)
                logger.debug("order finished", metadata: ["order_id": "\(job.orderID!)", "status": "\(result == .completed ? "completed" : "failed")",
                                                          "receives": "\(job.message.receiveCount)"])
            case .alreadyFinished:
                try await queue.delete(job.message.receiptHandle)
            case let .retry(delay, error):
                logger.debug("charge to be tried again", metadata: ["order_id": "\(job.orderID ?? "-")", "after": "\(delay)",
                                                                    "receives": "\(job.message.receiveCount)"])
                await giveBack(job, after: delay)
                // The failure in the order's history (off the common path; best effort).
                if let orderID = job.orderID {
                    let attempt = job.order.map { "attempt \($0.attempts)" } ?? "an attempt"
                    let event = OrderEvent(orderID: orderID, at: WallClock.nowMillis(), kind: .attemptFailed,
                                           detail: "\(attempt) (delivery \(job.message.receiveCount)) failed: \(error); tried again after \(delay.shortDescription)",
                                           actor: configuration.actor)
                    do { try await store.record([event]) } catch {
                        logger.debug("could not record a failed attempt", metadata: ["order_id": "\(orderID)", "error": "\(error)"])
                    }
                }
            case .giveBack:
                await giveBack(job, after: .zero)
            case .untried:
                await returnUntried([job])
            case .leaseLost:
                break
            case let .unusable(reason):
                logger.warning("unusable message; it will be dead-lettered",
                               metadata: ["order_id": "\(job.orderID ?? "-")", "message_id": "\(job.message.messageID)", "reason": "\(reason)"])
                await giveBack(job, after: .zero)
            }
        } catch QueueError.receiptHandleInvalid {
            // The lease ran out and the message went to someone else; they settle it.
            logger.debug("stale receipt on settle", metadata: ["order_id": "\(job.orderID ?? "-")", "message_id": "\(job.message.messageID)"])
        } catch {
            logger.error("settling failed; the message will be redelivered",
                         metadata: ["order_id": "\(job.orderID ?? "-")", "message_id": "\(job.message.messageID)", "error": "\(error)"])
            _ = await storeBreaker.isAway(after: error)
        }
    }

    private func giveBack(_ job: Job, after delay: Duration) async {
        let message = job.message
        // Leases are whole milliseconds: a shorter, non-zero backoff becomes 1 ms, not an error.
        let timeout = delay > .zero ? max(.milliseconds(1), min(delay, QueueLimits.maxVisibilityTimeout)) : .zero
        do {
            try await queue.changeVisibility(message.receiptHandle, timeout: timeout)
        } catch {
            logger.debug("give back failed", metadata: ["order_id": "\(job.orderID ?? "-")", "message_id": "\(message.messageID)", "error": "\(error)"])
        }
    }

    /// Gives jobs back untried: their deliveries and their orders' attempts uncounted.
    private func returnUntried(_ jobs: [Job]) async {
        guard !jobs.isEmpty else { return }
        // Only orders that startProcessing moved on: open ones (a finished order was left alone).
        let deliveries = jobs.map {
            UntriedDelivery(orderID: $0.order?.status == .processing ? $0.orderID : nil, receipt: $0.message.receiptHandle)
        }
        do {
            try await store.returnUntried(deliveries)
        } catch {
            logger.error("returning untried messages failed; their leases will run out",
                         metadata: ["order_ids": "\(jobs.compactMap(\.orderID).joined(separator: ","))", "error": "\(error)"])
            _ = await storeBreaker.isAway(after: error)
        }
    }
}
