import Foundation
import Synchronization

/// How long a `BEGIN IMMEDIATE` waits for the file's write lock while another process holds it:
/// until the earliest expiry of the operations waiting for it (set by the writer), else (a
/// connection outside the writer's `BEGIN`) up to ``longest``. Read by the connections' busy handler, which retries every 200 µs. (SQLite's own
/// timeout handler backs off to 100 ms sleeps, which lets a busy process take the lock again and
/// again while the others sleep.) The handler is shared by the pool's connections; only the
/// writer's `BEGIN IMMEDIATE` waits on the write lock in WAL mode.
final class WriteLockWait: Sendable {
    /// The longest wait without a deadline.
    static let longest: Duration = .seconds(60)
    private let origin = ContinuousClock.now
    /// The deadline, in nanoseconds after `origin`; 0 for none.
    private let deadline = Atomic<Int64>(0)
    /// Set when the handler gave up at a deadline (not at ``longest``).
    private let expired = Atomic<Bool>(false)

    /// Bounds the next waits by `instant` (nil: ``longest``).
    func set(until instant: ContinuousClock.Instant?) {
        expired.store(false, ordering: .relaxed)
        deadline.store(instant.map { max(1, Self.nanoseconds($0 - origin)) } ?? 0, ordering: .relaxed)
    }

    /// Brings the deadline forward to `instant` if it is set and later.
    func lower(to instant: ContinuousClock.Instant) {
        let value = max(1, Self.nanoseconds(instant - origin))
        var current = deadline.load(ordering: .relaxed)
        while current != 0, value < current {
            let (exchanged, original) = deadline.compareExchange(expected: current, desired: value, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    /// Whether the last wait ended at the deadline that ``set(until:)`` gave.
    var gaveUpAtDeadline: Bool { expired.load(ordering: .relaxed) }

    /// The busy handler: whether to try again (after a 200 µs sleep).
    func retry(tries: Int) -> Bool {
        let limit = deadline.load(ordering: .relaxed)
        if limit != 0 {
            guard Self.nanoseconds(ContinuousClock.now - origin) < limit else {
                expired.store(true, ordering: .relaxed)
                return false
            }
        } else if tries >= Int(Self.longest.components.seconds) * 5_000 {
            return false
        }
        usleep(200)
        return true
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }
}
