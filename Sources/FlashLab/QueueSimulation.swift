import Foundation

/// A stochastic simulation of the sale: random (Poisson) arrivals at rate λ for T seconds, W
/// servers, service times fixed or exponential, first come first served, until the queue empties.
///
/// Time advances in small fixed steps (`--steps` per run) rather than event by event, so its cost
/// does not grow with the arrival rate: a million orders per second simulates as fast as one.
/// Per step, arrivals are Poisson (exact below a mean of 500, normal above); with fixed service,
/// an order started in step k finishes S later; with exponential service, each busy server
/// finishes in a step with probability 1 − e^(−dt/S).
public struct QueueSimulation: Sendable {
    public enum Service: String, Sendable, CaseIterable {
        case fixed, exponential
    }

    /// One run's figures.
    public struct Run: Sendable, Hashable {
        public var peakQueueDepth: Double
        public var drainTime: Double
        public var processed: Double
        public var arrivals: Double
        public var processingRate: Double
    }

    /// Mean and spread over runs.
    public struct Summary: Sendable, Hashable {
        public var runs: [Run]
        public func mean(_ field: KeyPath<Run, Double>) -> Double {
            runs.map { $0[keyPath: field] }.reduce(0, +) / Double(max(1, runs.count))
        }
        public func standardDeviation(_ field: KeyPath<Run, Double>) -> Double {
            let m = mean(field)
            let variance = runs.map { pow($0[keyPath: field] - m, 2) }.reduce(0, +) / Double(max(1, runs.count - 1))
            return variance.squareRoot()
        }
    }

    public var plan: CapacityPlan
    public var service: Service
    public var steps: Int

    public init(plan: CapacityPlan, service: Service = .fixed, steps: Int = 20_000) {
        self.plan = plan
        self.service = service
        self.steps = max(100, steps)
    }

    /// Runs `runs` independent simulations.
    public func simulate<G: RandomNumberGenerator>(runs: Int, using generator: inout G) -> Summary {
        Summary(runs: (0..<max(1, runs)).map { _ in simulateOnce(using: &generator) })
    }

    func simulateOnce<G: RandomNumberGenerator>(using generator: inout G) -> Run {
        let workers = Double(plan.workers)
        let serviceTime = plan.serviceTime
        // Horizon: the sale plus the theoretical drain, with margin; the run stops once empty.
        let theoreticalEnd = plan.capacity > 0 ? plan.timeToEmpty : plan.duration
        let horizon = max(plan.duration, theoreticalEnd) * 1.5 + serviceTime * 4
        // Steps of at most S/8 (and at most 4 million of them), so service times stay accurate.
        let dt = max(min(horizon / Double(steps), serviceTime / 8), horizon / 4_000_000)
        // With fixed service, an order started in step k finishes S/dt steps later: that is split
        // between the two neighbouring steps so the mean service time is exactly S.
        let lagSteps = serviceTime / dt
        let lag = max(1, Int(lagSteps.rounded(.down)))
        let lateFraction = max(0, lagSteps - Double(lag))
        let ring = lag + 2
        var finishing = [Double](repeating: 0, count: service == .fixed ? ring : 0)
        var queue = 0.0, busy = 0.0, processed = 0.0, arrivals = 0.0, peak = 0.0
        var lastCompletion = 0.0
        var step = 0
        let finishProbability = 1 - exp(-dt / serviceTime)
        while true {
            let time = Double(step) * dt
            if time < plan.duration {
                let arrived = Self.poisson(mean: plan.demand * dt, using: &generator)
                queue += arrived
                arrivals += arrived
            }
            var finished = 0.0
            if lagSteps < 1 {
                // Steps longer than a service time: each server finishes dt/S orders per step.
                let served = min(queue, workers * dt / serviceTime)
                queue -= served
                processed += served
                if served > 0 { lastCompletion = time + dt }
                peak = max(peak, queue)
                step += 1
                if time >= plan.duration, queue < 0.5 { break }
                if Double(step) * dt > horizon * 4 { break }
                continue
            }
            switch service {
            case .fixed:
                finished = finishing[step % ring]
                finishing[step % ring] = 0
            case .exponential:
                finished = Self.binomial(trials: busy, probability: finishProbability, using: &generator)
            }
            busy -= finished
            processed += finished
            if finished > 0 { lastCompletion = time }
            let starting = min(queue, workers - busy)
            if starting > 0 {
                queue -= starting
                busy += starting
                if service == .fixed {
                    finishing[(step + lag) % ring] += starting * (1 - lateFraction)
                    finishing[(step + lag + 1) % ring] += starting * lateFraction
                }
            }
            peak = max(peak, queue)
            step += 1
            if time >= plan.duration, queue < 0.5, busy < 0.5 { break }
            if Double(step) * dt > horizon * 4 { break }
        }
        let drain = max(0, lastCompletion - plan.duration)
        return Run(peakQueueDepth: peak, drainTime: drain, processed: processed, arrivals: arrivals,
                   processingRate: lastCompletion > 0 ? processed / max(lastCompletion, dt) : 0)
    }

    static func poisson<G: RandomNumberGenerator>(mean: Double, using generator: inout G) -> Double {
        guard mean > 0 else { return 0 }
        if mean > 500 {
            return max(0, (mean + mean.squareRoot() * normal(using: &generator)).rounded())
        }
        let limit = exp(-mean)
        var product = Double.random(in: 0..<1, using: &generator)
        var count = 0.0
        while product > limit {
            count += 1
            product *= Double.random(in: 0..<1, using: &generator)
        }
        return count
    }

    static func binomial<G: RandomNumberGenerator>(trials: Double, probability: Double, using generator: inout G) -> Double {
        guard trials >= 1, probability > 0 else { return 0 }
        if trials * probability > 30 {
            let mean = trials * probability
            let sd = (mean * (1 - probability)).squareRoot()
            return min(trials, max(0, (mean + sd * normal(using: &generator)).rounded()))
        }
        return poisson(mean: trials * probability, using: &generator).clamped(to: 0...trials)
    }

    static func normal<G: RandomNumberGenerator>(using generator: inout G) -> Double {
        let u1 = Double.random(in: Double.ulpOfOne..<1, using: &generator)
        let u2 = Double.random(in: 0..<1, using: &generator)
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}

extension Comparable {
    func clamped(to range: ClosedRange<Self>) -> Self { min(max(self, range.lowerBound), range.upperBound) }
}
