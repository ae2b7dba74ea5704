import FlashCore

/// How long a simulated charge takes.
public enum LatencyModel: Sendable, Hashable, CustomStringConvertible {
    /// Always the same time (the seeds' 3 s).
    case fixed(Duration)
    /// Uniform between two times.
    case uniform(Duration, Duration)
    /// Exponential with the given mean (memoryless service, as in queueing theory's M/M/c).
    case exponential(mean: Duration)

    /// Parses `3s`, `20ms..40ms` (uniform) or `exp:3s` (exponential).
    public init?(parsing text: String) {
        if text.hasPrefix("exp:") {
            guard let mean = Duration(parsing: String(text.dropFirst(4))) else { return nil }
            self = .exponential(mean: mean)
        } else if let range = text.range(of: "..") {
            guard let low = Duration(parsing: String(text[..<range.lowerBound])),
                  let high = Duration(parsing: String(text[range.upperBound...])), low <= high
            else { return nil }
            self = .uniform(low, high)
        } else if let fixed = Duration(parsing: text) {
            self = .fixed(fixed)
        } else {
            return nil
        }
    }

    /// The mean latency.
    public var mean: Duration {
        switch self {
        case let .fixed(value): return value
        case let .uniform(low, high): return (low + high) / 2
        case let .exponential(mean): return mean
        }
    }

    /// The longest fixed part of the model: the value, the upper bound, or the mean.
    public var longest: Duration {
        switch self {
        case let .fixed(value): return value
        case let .uniform(_, high): return high
        case let .exponential(mean): return mean
        }
    }

    /// One draw.
    public func sample<G: RandomNumberGenerator>(using generator: inout G) -> Duration {
        switch self {
        case let .fixed(value):
            return value
        case let .uniform(low, high):
            let span = (high - low).asSeconds
            return low + .nanoseconds(Int64(Double.random(in: 0...1, using: &generator) * span * 1e9))
        case let .exponential(mean):
            let u = Double.random(in: Double.ulpOfOne..<1, using: &generator)
            return .nanoseconds(Int64(-log(u) * mean.asSeconds * 1e9))
        }
    }

    public var description: String {
        switch self {
        case let .fixed(value): return value.shortDescription
        case let .uniform(low, high): return "\(low.shortDescription)..\(high.shortDescription)"
        case let .exponential(mean): return "exp:\(mean.shortDescription)"
        }
    }
}

import Foundation
