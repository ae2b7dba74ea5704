import FlashCore
import Foundation

/// A run in stages, as k6's `stages`: each stage moves the target (a request rate, or a number
/// of users) linearly from where the last one ended to its own, over its duration.
/// `10s:100/s,30s:1000/s,10s:0/s` ramps an open loop from 0 to 100/s in 10 s, on to 1000/s
/// in 30 s, and down to 0 in the last 10 s; `10s:50,30s:50,5s:0` does the same with users.
public struct LoadStages: Sendable, Equatable {
    /// One stage: its length in seconds and the target reached at its end.
    public struct Stage: Sendable, Equatable {
        public var duration: Double
        public var target: Double
    }

    /// What the targets count.
    public enum Kind: Sendable, Equatable {
        /// Requests per second (an open loop).
        case rate
        /// Users (a closed loop).
        case users
    }

    public var stages: [Stage]
    public var kind: Kind

    /// Parses `DURATION:TARGET,…`, every target a rate (`100/s`) or every one a user count.
    public init(parsing text: String) throws(TemplateError) {
        var stages: [Stage] = []
        var kinds: Set<Kind> = []
        for field in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            let pair = field.split(separator: ":", maxSplits: 1).map(String.init)
            guard pair.count == 2, let duration = Duration(parsing: pair[0]), duration > .zero else {
                throw TemplateError("--stages: each stage is DURATION:TARGET such as 30s:1000/s or 30s:50 (users), not '\(field)'")
            }
            if pair[1].contains("/") {
                guard let rate = RateParsing.perSecond(pair[1]), rate >= 0 else {
                    throw TemplateError("--stages: '\(pair[1])' in '\(field)' is not a rate such as 100/s")
                }
                stages.append(Stage(duration: duration.asSeconds, target: rate))
                kinds.insert(.rate)
            } else {
                guard let users = Int(pair[1]), users >= 0 else {
                    throw TemplateError("--stages: '\(pair[1])' in '\(field)' is not a number of users (or a rate such as 100/s)")
                }
                stages.append(Stage(duration: duration.asSeconds, target: Double(users)))
                kinds.insert(.users)
            }
        }
        guard let kind = kinds.first, kinds.count == 1 else {
            throw TemplateError(kinds.isEmpty ? "--stages needs at least one stage such as 30s:100/s"
                                              : "--stages: give every target as a rate (100/s) or every one as users (50), not both")
        }
        guard stages.contains(where: { $0.target > 0 }) else { throw TemplateError("--stages: every target is 0; nothing would be sent") }
        self.stages = stages
        self.kind = kind
    }

    /// The whole run, in seconds.
    public var duration: Double { stages.reduce(0) { $0 + $1.duration } }

    /// The largest target of any stage.
    public var peak: Double { stages.map(\.target).max() ?? 0 }

    /// The target at `elapsed` seconds, starting from `initial` at 0.
    public func target(at elapsed: Double, from initial: Double = 0) -> Double {
        var start = initial
        var begin = 0.0
        for stage in stages {
            if elapsed < begin + stage.duration {
                return start + (stage.target - start) * (elapsed - begin) / stage.duration
            }
            start = stage.target
            begin += stage.duration
        }
        return stages.last?.target ?? initial
    }

    /// The intended send times of an open loop in stages, in seconds from the start: the
    /// i-th request goes when the rate's integral reaches i.
    public struct SendTimes: Sendable, IteratorProtocol {
        let stages: [Stage]
        var index = 0
        var stageStart = 0.0
        var startRate: Double
        /// Requests due before the current stage began.
        var countBefore = 0.0
        var wanted = 0.0

        init(stages: [Stage], initial: Double) {
            self.stages = stages
            self.startRate = initial
        }

        /// The next send time, or nil once every stage is over.
        public mutating func next() -> Double? {
            while index < stages.count {
                let stage = stages[index]
                let a = startRate, b = stage.target, d = stage.duration
                let area = (a + b) / 2 * d
                let x = wanted - countBefore
                // The i-th send is where the integral reaches i; one due exactly at a stage's
                // end (or within rounding of it) belongs to the next stage, or to none.
                if x < area - 1e-9 {
                    // Solve a·τ + k·τ²/2 = x, k the slope of the rate.
                    let k = (b - a) / d
                    let tau = abs(k) < 1e-12 ? x / a : (-a + (a * a + 2 * k * x).squareRoot()) / k
                    wanted += 1
                    return stageStart + min(max(tau, 0), d)
                }
                countBefore += area
                stageStart += d
                startRate = b
                index += 1
            }
            return nil
        }
    }

    /// The send times of an open loop over these stages, its rate starting at `initial`.
    public func sendTimes(from initial: Double = 0) -> SendTimes {
        SendTimes(stages: stages, initial: initial)
    }
}
