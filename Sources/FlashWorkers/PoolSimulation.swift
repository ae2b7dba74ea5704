import DequeModule

/// A worker pool and its queue in simulated time, sized by a ``WorkerScaler`` (the same code
/// `--workers auto` runs): for `flashsale plan --simulate --workers auto` and for the
/// controller's tests.
///
/// A fluid model stepped at the controller's interval: orders arrive by ``Arrivals``, wait in
/// FIFO order, and a started charge takes the service time. A gateway with a concurrency limit
/// either queues charges beyond it (each takes `S × busy / limit`) or refuses them (a 429 after
/// a tenth of S; the order waits again). Workers are added at once and retire only when idle,
/// as the real pool does, so a simulated million orders per second costs what sixty do.
public struct PoolSimulation: Sendable {
    /// When orders arrive.
    public enum Arrivals: Sendable {
        /// `rate(t)` orders per second at simulated second t.
        case rate(@Sendable (Double) -> Double)
        /// Arrival instants in seconds from the start (a recorded trace), ascending.
        case instants([Double])
    }

    /// What a payment gateway does with charges beyond its concurrency limit.
    public enum GatewayLimit: Sendable, Hashable {
        /// Serves them all, each slower (`S × busy / limit`).
        case queues(Int)
        /// Refuses those beyond it at once (429).
        case refuses(Int)
    }

    /// One row of the simulation's history, at each controller sample.
    public struct Sample: Sendable, Hashable {
        public var time: Double
        public var workers: Int
        public var busy: Int
        public var waiting: Int
        public var oldestAgeSeconds: Double
        public var arrivalRate: Double
        public var completed: Int
    }

    /// What a run produced.
    public struct Result: Sendable {
        public var samples: [Sample]
        /// Sum over time of the workers running (busy or idle), in worker-seconds.
        public var workerSeconds: Double
        public var arrived: Int
        public var completed: Int
        /// Charges a gateway refused (``GatewayLimit/refuses(_:)``).
        public var refused: Int
        /// The oldest message's largest age, seconds.
        public var peakAgeSeconds: Double
        public var peakWorkers: Int
    }

    public var scaler: WorkerScaler.Configuration
    public var serviceTime: Double
    public var gatewayLimit: GatewayLimit?
    /// Identical processes sharing the queue (each runs the controller on its share).
    public var processes: Int

    public init(scaler: WorkerScaler.Configuration, serviceTime: Double, gatewayLimit: GatewayLimit? = nil, processes: Int = 1) {
        self.scaler = scaler
        self.serviceTime = serviceTime
        self.gatewayLimit = gatewayLimit
        self.processes = max(1, processes)
    }

    /// Runs for `duration` simulated seconds of arrivals, then while orders are left (up to
    /// `drainLimit` more), and at least until `through`.
    public func run(_ arrivals: Arrivals, duration: Double, through: Double = 0, drainLimit: Double = 3_600) -> Result {
        let step = scaler.interval.asSeconds
        var controllers = Array(repeating: WorkerScaler(configuration: scaler), count: processes)
        // Each process's controller answer and busy workers; they share the waiting line. A
        // process runs max(answer, busy): a worker above the answer retires when its charge ends.
        var workers = Array(repeating: max(1, scaler.minWorkers), count: processes)
        var busy = Array(repeating: 0, count: processes)
        var charges = Array(repeating: (count: 0, seconds: 0.0, errors: 0), count: processes)
        var waiting: Deque<(arrived: Double, count: Int)> = []
        var waitingCount = 0
        var inService: [(end: Double, arrived: Double, count: Int, seconds: Double, process: Int, refused: Bool)] = []
        var result = Result(samples: [], workerSeconds: 0, arrived: 0, completed: 0, refused: 0, peakAgeSeconds: 0, peakWorkers: 0)
        var carry = 0.0
        var traceIndex = 0
        var time = 0.0
        while time < max(duration, through) || (waitingCount + inService.reduce(0) { $0 + $1.count } > 0 && time < duration + drainLimit) {
            let next = time + step
            // Arrivals during (time, next].
            var arrivedNow = 0
            switch arrivals {
            case let .rate(rate):
                if time < duration {
                    carry += max(0, rate(time)) * step
                    arrivedNow = Int(carry)
                    carry -= Double(arrivedNow)
                }
            case let .instants(instants):
                while traceIndex < instants.count, instants[traceIndex] < next {
                    arrivedNow += 1
                    traceIndex += 1
                }
            }
            if arrivedNow > 0 {
                waiting.append((next, arrivedNow))
                waitingCount += arrivedNow
                result.arrived += arrivedNow
            }
            time = next
            // Charges that ended.
            var stillRunning: [(end: Double, arrived: Double, count: Int, seconds: Double, process: Int, refused: Bool)] = []
            for charge in inService {
                guard charge.end <= time else {
                    stillRunning.append(charge)
                    continue
                }
                busy[charge.process] -= charge.count
                if !charge.refused {
                    charges[charge.process].count += charge.count
                    charges[charge.process].seconds += charge.seconds * Double(charge.count)
                }
                if charge.refused {
                    charges[charge.process].errors += charge.count
                    result.refused += charge.count
                    waiting.prepend((charge.arrived, charge.count))
                    waitingCount += charge.count
                } else {
                    result.completed += charge.count
                }
            }
            inService = stillRunning
            // Idle workers start the oldest orders.
            for process in 0..<processes {
                var free = max(0, workers[process] - busy[process])
                while free > 0, var first = waiting.first {
                    let started = min(free, first.count)
                    free -= started
                    waitingCount -= started
                    first.count -= started
                    if first.count == 0 { waiting.removeFirst() } else { waiting[waiting.startIndex] = first }
                    busy[process] += started
                    let total = busy.reduce(0, +)
                    var seconds = serviceTime
                    switch gatewayLimit {
                    case let .queues(limit)?: seconds = serviceTime * max(1, Double(total) / Double(max(1, limit)))
                    case let .refuses(limit)?:
                        if total > limit {
                            // Those beyond the limit are refused quickly; the rest are served.
                            let over = min(started, total - limit)
                            if over < started {
                                inService.append((time + serviceTime, first.arrived, started - over, serviceTime, process, false))
                            }
                            inService.append((time + serviceTime / 10, first.arrived, over, serviceTime / 10, process, true))
                            continue
                        }
                    case nil: break
                    }
                    inService.append((time + seconds, first.arrived, started, seconds, process, false))
                }
            }
            // The controllers' samples (the queue as every process sees it).
            let inFlight = busy.reduce(0, +)
            let oldestArrival = min(waiting.first?.arrived ?? .infinity, inService.map(\.arrived).min() ?? .infinity)
            let oldestAge = oldestArrival.isFinite ? time - oldestArrival : 0
            var rate = 0.0
            for process in 0..<processes {
                let decision = controllers[process].observe(WorkerScaler.Observation(
                    visible: waitingCount, inFlight: inFlight, oldestAgeSeconds: oldestAge,
                    charges: charges[process].count, chargeSeconds: charges[process].seconds, gatewayErrors: charges[process].errors,
                    busy: busy[process], othersBusy: inFlight - busy[process], processes: processes), at: .nanoseconds(Int64(time * 1e9)))
                charges[process] = (0, 0, 0)
                workers[process] = decision.workers
                rate = decision.arrivalRate
            }
            let running = zip(workers, busy).reduce(0) { $0 + max($1.0, $1.1) }
            result.workerSeconds += Double(running) * step
            result.peakWorkers = max(result.peakWorkers, running)
            result.peakAgeSeconds = max(result.peakAgeSeconds, oldestAge)
            result.samples.append(Sample(time: time, workers: running, busy: inFlight, waiting: waitingCount,
                                         oldestAgeSeconds: oldestAge, arrivalRate: rate, completed: result.completed))
        }
        return result
    }
}
