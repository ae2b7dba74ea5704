import Synchronization

/// A store's line of grouped writes as admission control sees it: the ``LineForecast`` that
/// refuses placements on arrival, and how long admitted ones waited for their transaction to
/// begin (queue time). The store (SQLite's group-commit writer, PostgreSQL's placement groups)
/// reports its groups here; admission control reads the limit and the waits for `/stats` and
/// `/metrics`.
public final class AdmissionLine: Sendable {
    /// When a placement was refused, before anything of it was stored.
    public enum Refusal: String, Sendable, Hashable {
        /// On arrival: the line ahead of it would not let it begin by its deadline.
        case forecast
        /// At its deadline, still waiting for its transaction to begin.
        case deadline
    }

    /// What the line looks like now.
    public struct Status: Sendable, Hashable {
        /// The most placements that may wait and still be answered within the patience asked about:
        /// 0 while the store is stalled, nil before any group was timed (none is refused on arrival).
        public var limit: Int?
        /// Recent groups' duration, smoothed.
        public var groupTime: Duration?
        /// Whether the store has answered nothing for as long as the patience asked about.
        public var stalled: Bool
        /// The longest a placement waited for its transaction to begin, over the last 10 to 20 s.
        public var longestRecentWait: Duration
    }

    private struct State {
        var forecast: LineForecast
        var waitObserver: (@Sendable (Duration) -> Void)?
        /// The longest wait in the current and the previous 10 s window.
        var longestWait: (current: Duration, previous: Duration) = (.zero, .zero)
        var windowStart: ContinuousClock.Instant = .now
    }

    private static let window = Duration.seconds(10)
    private let state: Mutex<State>

    /// - Parameter groupLimit: the most calls one group of the store takes.
    public init(groupLimit: Int) {
        state = Mutex(State(forecast: LineForecast(groupLimit: groupLimit)))
    }

    /// The most calls one group takes.
    public var groupLimit: Int { state.withLock { $0.forecast.groupLimit } }

    /// Whether a placement arriving now, that must begin by `deadline`, would: see
    /// ``LineForecast/admits(ahead:running:patience:at:)``.
    public func admits(ahead: Int, running: Bool, deadline: ContinuousClock.Instant, at now: ContinuousClock.Instant = .now) -> Bool {
        state.withLock { $0.forecast.admits(ahead: ahead, running: running, patience: deadline - now, at: now) }
    }

    /// A group was taken off the line, or tries again to begin.
    public func groupStarted(at now: ContinuousClock.Instant = .now) {
        state.withLock { $0.forecast.groupStarted(at: now) }
    }

    /// The running group was answered.
    public func groupEnded(at now: ContinuousClock.Instant = .now) {
        state.withLock { $0.forecast.groupEnded(at: now) }
    }

    /// The line emptied with its last group unanswered (all of it expired).
    public func stopped(at now: ContinuousClock.Instant = .now) {
        state.withLock { $0.forecast.stopped(at: now) }
    }

    /// A placement's transaction began after it waited `waited` in the line.
    public func began(waited: Duration, at now: ContinuousClock.Instant = .now) {
        let observer = state.withLock { state in
            if now - state.windowStart >= Self.window {
                state.longestWait = (.zero, now - state.windowStart >= Self.window * 2 ? .zero : state.longestWait.current)
                state.windowStart = now
            }
            state.longestWait.current = max(state.longestWait.current, waited)
            return state.waitObserver
        }
        observer?(waited)
    }

    /// Calls `observer` with every placement's wait from now on (a metrics histogram).
    public func observeWaits(_ observer: @escaping @Sendable (Duration) -> Void) {
        state.withLock { $0.waitObserver = observer }
    }

    /// The line now, for placements that may wait `patience`.
    public func status(patience: Duration, at now: ContinuousClock.Instant = .now) -> Status {
        state.withLock { state in
            let stale = now - state.windowStart
            let longest: Duration = stale >= Self.window * 2 ? .zero
                : stale >= Self.window ? state.longestWait.current : max(state.longestWait.current, state.longestWait.previous)
            return Status(limit: state.forecast.limit(patience: patience, at: now), groupTime: state.forecast.groupTime,
                          stalled: state.forecast.isStalled(patience: patience, at: now), longestRecentWait: longest)
        }
    }
}
