/// What a store's line of grouped writes foretells for a call arriving now: whether it would be
/// answered (its group's transaction begun and committed) before its deadline, judged from how
/// long the store's recent groups took and how many calls wait ahead of it. A pure state machine: every reading
/// and event takes the instant it happens at, so tests drive it with made-up times.
///
/// The rule, for a call that may wait `patience`:
/// - Nothing runs and nothing waits: admitted (it starts at once). After a stall this is the
///   one call that probes whether the store answers again.
/// - The store has answered no group for `patience` or longer while it had work (a stalled
///   disk, another process holding SQLite's write lock, a paused PostgreSQL): refused on
///   arrival, since the line ahead of it has not moved for as long as it may wait. Such a stall
///   lasts, across idle moments, until a group is answered.
/// - Otherwise it waits for the running group's remaining time, then one group time for every
///   full group ahead of it (``groupLimit`` calls per group), then its own group's time:
///   refused on arrival when that reaches 90% of the time to its deadline, so that a client let
///   in is answered within it. Before any group was timed nothing is refused on arrival.
///
/// The deadline itself stays a bound on the *start* (the store refuses a call whose transaction
/// has not begun by then): the forecast keeps admitted calls' answers within the deadline, the
/// deadline keeps a wrong forecast from holding anyone longer.
///
/// Group times come from groups as they ran, small ones included: a small group is never slower
/// than a full one, so a forecast made from them errs towards admitting, and the deadline
/// itself still refuses whatever it let in too many. Under sustained overload the groups are
/// full and the forecast is the line's.
///
/// Modelled on CoDel (RFC 8289), which drops on the time packets spend in the queue rather than
/// on its length; here the time is forecast at arrival, so the refusal costs the client nothing
/// but a round trip. Hand-written: no package in the mirror forecasts a grouped line.
public struct LineForecast: Sendable {
    /// The most calls one group takes.
    public let groupLimit: Int
    /// Recent groups' duration, from taken off the line to answered, smoothed; nil until one ended.
    public private(set) var groupTime: Duration?
    /// When the running group was taken off the line; nil while none runs.
    private var groupStart: ContinuousClock.Instant?
    /// Since when the store has had work and answered no group; nil while it keeps answering.
    private var unansweredSince: ContinuousClock.Instant?

    /// The weight of the newest group in ``groupTime``: a slower group replaces the estimate at
    /// once, a faster one moves it an eighth of the way. Too low an estimate lets in clients the
    /// store then answers late; too high a one only refuses a few the store could have taken,
    /// until the next groups bring it down.
    static let smoothing = (slower: 1.0, faster: 0.125)

    public init(groupLimit: Int) {
        precondition(groupLimit > 0, "a group takes one call at least")
        self.groupLimit = groupLimit
    }

    /// A group was taken off the line at `now`, or tries again to begin (its first try counts).
    public mutating func groupStarted(at now: ContinuousClock.Instant) {
        if groupStart == nil { groupStart = now }
        if unansweredSince == nil { unansweredSince = now }
    }

    /// The running group was answered at `now` (committed, or failed and told so): the line moved.
    public mutating func groupEnded(at now: ContinuousClock.Instant) {
        if let groupStart {
            let took = now - groupStart
            groupTime = groupTime.map { last in
                let weight = took > last ? Self.smoothing.slower : Self.smoothing.faster
                return last * (1 - weight) + took * weight
            } ?? took
        }
        groupStart = nil
        unansweredSince = nil
    }

    /// The line emptied without its last group being answered (every call in it reached its
    /// deadline first): nothing runs now, and a stall, if one began, goes on.
    public mutating func stopped(at now: ContinuousClock.Instant) {
        groupStart = nil
    }

    /// Whether the store has answered no group for `patience` or longer while it had work.
    public func isStalled(patience: Duration, at now: ContinuousClock.Instant) -> Bool {
        guard let unansweredSince else { return false }
        return now - unansweredSince >= patience
    }

    /// Whether a call arriving at `now`, with `ahead` calls waiting before it (not counting the
    /// running group's), would be answered within `patience`.
    /// - Parameter running: whether a group runs now.
    public func admits(ahead: Int, running: Bool, patience: Duration, at now: ContinuousClock.Instant) -> Bool {
        if !running && ahead == 0 { return true }
        if isStalled(patience: patience, at: now) { return false }
        guard let groupTime else { return true }
        // The running group's remaining time: the rest of a usual group's time, or, once it is
        // overdue, as long again as it is overdue (a group slowing down is expected to go on
        // slowly, not to end at once). Nothing between groups.
        var remaining = Duration.zero
        if running, let groupStart {
            let elapsed = now - groupStart
            remaining = elapsed <= groupTime ? groupTime - elapsed : elapsed - groupTime
        }
        return remaining + groupTime * (ahead / groupLimit + 1) < patience * (1 - Self.margin)
    }

    /// The share of a call's patience kept back from the forecast: group times vary, and the
    /// answer still has to reach the client.
    static let margin = 0.1

    /// The most calls that may wait and still be answered within `patience` (the admission
    /// limit), as foretold now: 0 while stalled or while one group takes `patience` (only a call
    /// finding the line idle gets in), nil before any group was timed.
    public func limit(patience: Duration, at now: ContinuousClock.Instant) -> Int? {
        if isStalled(patience: patience, at: now) { return 0 }
        guard let groupTime, groupTime > .zero else { return nil }
        return groupLimit * max(0, Int((patience * (1 - Self.margin) / groupTime).rounded(.up)) - 1)
    }
}
