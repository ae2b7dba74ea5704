import Dispatch
import GRDB

/// Holds an SQLite file's write lock (`BEGIN IMMEDIATE`), as another process's long write
/// would, until released: every other writer of the file waits meanwhile. For tests of what the
/// embedded backend does when its file is locked (admission control, the writer's deadlines).
///
/// ```swift
/// let lock = try await SQLiteLockHolder(path: "flashsale.db")
/// // … the file is locked …
/// lock.release()
/// ```
public final class SQLiteLockHolder: Sendable {
    private let done = DispatchSemaphore(value: 0)

    /// Opens `path` and takes its write lock (waiting up to 60 s for it); returns once held. The
    /// transaction waits on a thread of its own, not on Swift's concurrency pool.
    public init(path: String) async throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(60)
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        let done = self.done
        try await withCheckedThrowingContinuation { (locked: CheckedContinuation<Void, any Error>) in
            DispatchQueue.global().async {
                var held = false
                do {
                    try queue.writeWithoutTransaction { db in
                        try db.execute(sql: "BEGIN IMMEDIATE")
                        held = true
                        locked.resume()
                        done.wait()
                        try db.execute(sql: "COMMIT")
                    }
                } catch {
                    // After the lock was held, a failed COMMIT only lets it go (nothing was written).
                    if !held { locked.resume(throwing: error) }
                }
            }
        }
    }

    /// Lets the lock go (the transaction commits, having written nothing).
    public func release() { done.signal() }
}
