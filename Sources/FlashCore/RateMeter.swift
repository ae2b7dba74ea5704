import Synchronization

/// Events per second over a sliding window (default 10 s), in one-second buckets.
public final class RateMeter: Sendable {
    private struct State {
        var buckets: [Int]
        var bucketSeconds: [Int64]
    }

    private let state: Mutex<State>
    private let window: Int

    public init(windowSeconds: Int = 10) {
        window = max(2, windowSeconds)
        state = Mutex(State(buckets: Array(repeating: 0, count: window), bucketSeconds: Array(repeating: -1, count: window)))
    }

    /// Records `count` events now.
    public func record(_ count: Int = 1) {
        let second = WallClock.nowMillis() / 1000
        state.withLock { state in
            let index = Int(second % Int64(window))
            if state.bucketSeconds[index] != second {
                state.bucketSeconds[index] = second
                state.buckets[index] = 0
            }
            state.buckets[index] += count
        }
    }

    /// Events per second over the last full seconds of the window (the current second excluded).
    public var perSecond: Double {
        let now = WallClock.nowMillis() / 1000
        return state.withLock { state in
            var sum = 0
            for index in 0..<window {
                let second = state.bucketSeconds[index]
                if second < now, second >= now - Int64(window - 1) { sum += state.buckets[index] }
            }
            return Double(sum) / Double(window - 1)
        }
    }
}
