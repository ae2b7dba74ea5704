import DequeModule
import FlashCore
import Foundation

/// Sizes a worker pool from what the queue and the pool measure: the pure state machine behind
/// `--workers auto` and `flashsale plan --simulate --workers auto`.
///
/// Each ``observe(_:at:)`` takes one sample (the shared queue's counts and oldest age, the
/// pool's own charges since the last sample, the live worker processes) at an instant on any
/// steady clock, and answers the workers this process should run. Nothing in it reads a clock
/// or does I/O, so it is tested, and simulated at any scale, with made-up instants.
///
/// The rule is Little's law. With S the pool's service time (smoothed over its own charges),
/// λ the arrival rate and B the messages waiting, the fleet needs `S × (λ + B / T)` workers:
/// enough to carry the arrivals and to drain the backlog within the target wait T (half of it
/// once the oldest message has already waited longer than T). λ needs no shared counter: the
/// fleet's busy workers, over S, are the rate it finishes at (Little's law on the charges), and
/// the change of the queue's total between samples is what arrived beyond that. (Not the
/// queue's in-flight count: it also holds prefetched messages, retries waiting out a backoff
/// and the leases of dead processes, none of which is being charged.) Each process runs its share of
/// the need (divided by the live worker processes), so a fleet of ten carries the need once,
/// not ten times.
///
/// - The answer is an absolute count, recomputed at each sample: workers added a moment ago
///   are already in it (and in the in-flight count once they receive), so the pool never adds
///   again for capacity that is only starting.
/// - Up at once, down slowly: the answer is the largest need seen over
///   ``Configuration/scaleDownWindow`` (as Kubernetes' HPA stabilises), so a steady or sparse
///   load does not make the pool flap.
/// - The gateway as the limit: when the service time rises past 1.5× its baseline (the
///   gateway queues charges behind its own limit) more workers add nothing but waiting, and
///   the pool backs off to what the gateway carries at its baseline pace (its charges per
///   second × the baseline, and a tenth more).
///   Transient errors (429, 503, timeouts) in 5% of the charges cut it to 70% of the busy
///   workers. After a quiet window the ceiling rises 10% per sample, until the gateway
///   complains again or the ceiling passes the maximum. A gateway that is slower for good (at
///   any concurrency) becomes the new baseline after a window.
/// - Never above ``Configuration/maxWorkers``, never below ``Configuration/minWorkers``.
///   Stopping a worker never interrupts a charge: the pool retires workers between jobs.
public struct WorkerScaler: Sendable {
    /// The controller's settings.
    public struct Configuration: Sendable, Hashable {
        /// Fewest workers in this process.
        public var minWorkers: Int
        /// Most workers in this process.
        public var maxWorkers: Int
        /// The longest an order should wait before its charge starts (T).
        public var targetWait: Duration
        /// Scale-down stabilisation: the pool runs the largest need seen over this window.
        public var scaleDownWindow: Duration
        /// The service time assumed until charges have been timed (the gateway's expected latency).
        public var expectedServiceTime: Duration

        public init(minWorkers: Int = 1, maxWorkers: Int = 1_000, targetWait: Duration = .seconds(5),
                    scaleDownWindow: Duration = .seconds(30), expectedServiceTime: Duration = .seconds(1)) {
            self.minWorkers = minWorkers
            self.maxWorkers = maxWorkers
            self.targetWait = targetWait
            self.scaleDownWindow = scaleDownWindow
            self.expectedServiceTime = expectedServiceTime
        }

        /// How often to sample: a quarter of the target wait, between 10 ms and 1 s.
        public var interval: Duration {
            min(.seconds(1), max(.milliseconds(10), targetWait / 4))
        }
    }

    /// One sample.
    public struct Observation: Sendable, Hashable {
        /// Messages waiting for a worker (the shared queue's visible count).
        public var visible: Int
        /// Messages received and not yet deleted, by the whole fleet.
        public var inFlight: Int
        /// Messages sent with a delay (retries in backoff).
        public var delayed: Int
        /// Age of the oldest message in the queue, in seconds.
        public var oldestAgeSeconds: Double
        /// Charges this process had answered (approved or declined) since the last sample.
        public var charges: Int
        /// Their total time, in seconds (from the request to its answer).
        public var chargeSeconds: Double
        /// Charges that failed transiently since the last sample (429, 503, a timeout, a cut
        /// connection); not in `charges`.
        public var gatewayErrors: Int
        /// This process's workers charging now.
        public var busy: Int
        /// The other processes' workers charging (as of their last heartbeats).
        public var othersBusy: Int
        /// Live processes running payment workers, this one included.
        public var processes: Int

        public init(visible: Int, inFlight: Int, delayed: Int = 0, oldestAgeSeconds: Double,
                    charges: Int, chargeSeconds: Double, gatewayErrors: Int = 0, busy: Int, othersBusy: Int = 0, processes: Int = 1) {
            self.othersBusy = othersBusy
            self.visible = visible
            self.inFlight = inFlight
            self.delayed = delayed
            self.oldestAgeSeconds = oldestAgeSeconds
            self.charges = charges
            self.chargeSeconds = chargeSeconds
            self.gatewayErrors = gatewayErrors
            self.busy = busy
            self.processes = processes
        }
    }

    /// What the controller answers after a sample.
    public struct Decision: Sendable, Hashable {
        /// Workers this process should run.
        public var workers: Int
        /// Workers the whole fleet needs (Little's law), before this process's bounds.
        public var fleetNeed: Int
        /// Worker processes the fleet needs at ``Configuration/maxWorkers`` each.
        public var recommendedProcesses: Int
        /// The arrival rate, orders per second (smoothed).
        public var arrivalRate: Double
        /// The service time, seconds (smoothed).
        public var serviceSeconds: Double
        /// The most workers the gateway is taken to carry now; nil while it shows no limit.
        public var gatewayCeiling: Int?
    }

    public let configuration: Configuration
    /// The latest answer (``Configuration/minWorkers`` before the first sample).
    public private(set) var decision: Decision

    private var lastTime: Double?
    private var lastTotal = 0
    private var rate: Double?
    /// Charges this process ended per second (smoothed): what the gateway carried.
    private var throughput = 0.0
    private var service: Double
    private var baseline: Double
    private var timed = false
    /// (instant, need) of the samples within the scale-down window, needs decreasing from the
    /// front (a sample with a later, larger need makes the earlier, smaller ones irrelevant), so
    /// the window's largest is the first: constant time per sample however long the window.
    private var needs: Deque<(Double, Int)> = []
    private var ceiling: Int?
    /// When the ceiling was last set or lowered (probing up waits a window from it).
    private var ceilingSetAt = 0.0
    /// When the ceiling was last lowered or raised: it does not move again before the charges
    /// started since have been timed (a service time, two samples at least).
    private var cutAt = -Double.infinity
    /// Since when the service time has been above 1.5× the baseline without a break.
    private var slowSince: Double?

    /// The fewest workers: ``Configuration/minWorkers``, at least 1 (a pool of none would
    /// never take the message that should make it grow).
    public var minimum: Int { max(1, configuration.minWorkers) }

    public init(configuration: Configuration) {
        self.configuration = configuration
        let expected = max(1e-6, configuration.expectedServiceTime.asSeconds)
        self.service = expected
        self.baseline = expected
        self.decision = Decision(workers: max(1, configuration.minWorkers), fleetNeed: 0, recommendedProcesses: 0,
                                 arrivalRate: 0, serviceSeconds: expected, gatewayCeiling: nil)
    }

    /// Takes one sample at `now` (any steady clock; only differences count) and answers.
    @discardableResult
    public mutating func observe(_ sample: Observation, at now: Duration) -> Decision {
        let time = now.asSeconds
        let window = configuration.scaleDownWindow.asSeconds
        updateServiceTime(sample)
        // Arrivals: what the fleet finishes (in flight over S) plus the growth of the queue.
        let total = sample.visible + sample.inFlight + sample.delayed
        let departures = Double(max(0, sample.busy) + max(0, sample.othersBusy)) / service
        if let lastTime, time > lastTime {
            let elapsed = time - lastTime
            // Not clamped here: a sample where a burst of charges ended reads low (even below 0),
            // the next ones high, and only their average is the rate.
            let instant = departures + Double(total - lastTotal) / elapsed
            // Smoothed over about three samples' time.
            let weight = 1 - exp(-elapsed / (3 * configuration.interval.asSeconds))
            rate = (rate ?? instant) + weight * (instant - (rate ?? instant))
            throughput += weight * (Double(sample.charges) / elapsed - throughput)
        } else if lastTime == nil {
            rate = departures
        }
        lastTime = time
        lastTotal = total
        let arrivals = max(0, rate ?? 0)
        // Little's law: carry the arrivals, and drain the backlog within the target wait (half
        // of it once the oldest message has waited longer than that already).
        let target = configuration.targetWait.asSeconds
        let waited = max(0, sample.oldestAgeSeconds - service)
        let drainWithin = max(1e-3, waited > target ? target / 2 : target)
        // Bounded before it becomes a count (a wild trace or a huge expected latency).
        let need = min(1e12, service * (arrivals + Double(sample.visible) / drainWithin))
        // Whole workers, a tenth of one forgiven (the smoothed rate decays towards 0 but never
        // reaches it); at least one while any message is waiting or in flight.
        let pending = sample.visible + sample.inFlight + sample.delayed > 0
        let fleetNeed = max(pending ? 1 : 0, Int(max(0, need - 0.1).rounded(.up)))
        let share = (fleetNeed + max(1, sample.processes) - 1) / max(1, sample.processes)
        // Up at once, down after a window.
        while let last = needs.last, last.1 <= share { needs.removeLast() }
        needs.append((time, share))
        while let first = needs.first, first.0 < time - window { needs.removeFirst() }
        var workers = needs.first?.1 ?? share
        watchGateway(sample, at: time, window: window)
        if let ceiling { workers = min(workers, ceiling) }
        workers = min(configuration.maxWorkers, max(minimum, workers))
        let perProcess = max(1, configuration.maxWorkers)
        decision = Decision(workers: workers, fleetNeed: fleetNeed,
                            recommendedProcesses: fleetNeed == 0 ? 0 : (fleetNeed + perProcess - 1) / perProcess,
                            arrivalRate: arrivals, serviceSeconds: service, gatewayCeiling: ceiling)
        return decision
    }

    private mutating func updateServiceTime(_ sample: Observation) {
        guard sample.charges > 0 else { return }
        let measured = max(1e-6, sample.chargeSeconds / Double(sample.charges))
        if timed {
            service += 0.3 * (measured - service)
        } else {
            // The first timed charges replace the assumption.
            service = measured
            baseline = measured
            timed = true
        }
        if service < baseline {
            baseline = service
        } else if service <= 1.5 * baseline {
            // A baseline follows a gateway that became a little slower, slowly.
            baseline += 0.02 * (service - baseline)
        }
    }

    /// Sets, lowers, raises or lifts the gateway ceiling.
    private mutating func watchGateway(_ sample: Observation, at time: Double, window: Double) {
        let attempts = sample.charges + sample.gatewayErrors
        let failing = sample.gatewayErrors > 0 && Double(sample.gatewayErrors) >= 0.05 * Double(attempts)
        let slow = timed && sample.charges > 0 && service > 1.5 * baseline
        // Whether this sample's own charges (not the smoothed time, which lags a cut) were slow.
        if sample.charges > 0 {
            let measured = sample.chargeSeconds / Double(sample.charges)
            if measured > 1.5 * baseline { slowSince = slowSince ?? time } else { slowSince = nil }
        }
        let busy = max(1, sample.busy)
        let minimum = self.minimum
        let hold = max(2 * configuration.interval.asSeconds, service)
        let settled = time - cutAt >= hold
        if failing {
            guard settled else { return }
            // From the pool's size, not the busy count of one instant (fast refusals leave few
            // workers busy at any moment).
            let cut = max(minimum, Int(Double(min(ceiling ?? decision.workers, decision.workers)) * 0.7))
            ceiling = min(ceiling ?? cut, cut)
            ceilingSetAt = time
            cutAt = time
        } else if slow {
            if let since = slowSince, time - max(since, cutAt + hold) >= max(window, 5 * baseline), let ceiling, busy <= ceiling {
                // Every charge as slow at the reduced concurrency, long after the cut, as above
                // it: the gateway itself got slower.
                baseline = service
                self.ceiling = nil
                slowSince = nil
                return
            }
            // What the gateway carries (charges per second) at its baseline pace, and a tenth more.
            let carried = max(minimum, Int(min(1e12, throughput * baseline * 1.1).rounded(.up)))
            if settled, carried < (ceiling ?? .max) {
                ceiling = carried
                ceilingSetAt = time
                cutAt = time
            }
        } else if let current = ceiling, time - ceilingSetAt >= window, settled {
            // Quiet for a window: probe upwards, a tenth at a time, each step timed first.
            let raised = current + max(1, current / 10)
            ceiling = raised >= configuration.maxWorkers ? nil : raised
            cutAt = time
        }
    }
}
