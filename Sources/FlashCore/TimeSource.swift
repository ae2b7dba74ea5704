import Synchronization

/// Where a store reads "now" for the times it keeps (leases, delays, retention, holds): integer
/// milliseconds since the Unix epoch, as stored in the databases.
///
/// Production uses ``system``, the wall clock. A test that checks a time-based rule (a delay
/// ending, a message passing its retention, a lease running out) gives the store a
/// ``ManualTime``'s source and moves that time itself, so the check does not depend on how fast
/// the machine runs the test.
///
/// Hand-written on purpose: swift-clocks' `TestClock` and postgres-nio's `MockClock` drive
/// `Clock.sleep`, whose instants cannot be stored; these stores compare stored epoch
/// milliseconds, so they need a source of those.
public struct TimeSource: Sendable {
    private let read: @Sendable () -> Int64

    /// A source that calls `read` for the current time in epoch milliseconds.
    public init(_ read: @escaping @Sendable () -> Int64) {
        self.read = read
    }

    /// Now, in milliseconds since 1970-01-01T00:00:00Z.
    public func nowMillis() -> Int64 { read() }

    /// The system's wall clock (``WallClock/nowMillis()``): for times that are stored or shared
    /// between processes.
    public static let system = TimeSource { WallClock.nowMillis() }

    /// A steady clock (milliseconds on `ContinuousClock` since this process first read it): for
    /// times kept only in this process, such as backoffs, which a step of the wall clock (NTP, a
    /// resumed VM) must neither stretch nor cut short.
    public static let monotonic: TimeSource = {
        let origin = ContinuousClock.now
        return TimeSource { (ContinuousClock.now - origin).asMilliseconds }
    }()
}

/// A time that moves only when told to (``advance(by:)``): for tests of time-based rules.
///
/// It starts at the wall clock's reading, so ids and timestamps made from it look ordinary.
public final class ManualTime: Sendable {
    private let millis: Atomic<Int64>

    public init(startingAt millis: Int64 = WallClock.nowMillis()) {
        self.millis = Atomic(millis)
    }

    /// The current manual time, in epoch milliseconds.
    public var nowMillis: Int64 { millis.load(ordering: .sequentiallyConsistent) }

    /// Moves the time forward by `duration`.
    public func advance(by duration: Duration) {
        precondition(duration >= .zero, "manual time only moves forward")
        _ = millis.wrappingAdd(duration.asMilliseconds, ordering: .sequentiallyConsistent)
    }

    /// A source that reads this time.
    public var source: TimeSource { TimeSource { [self] in self.nowMillis } }
}
