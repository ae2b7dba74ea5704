import GRDB
import Synchronization

/// Runs write operations from many concurrent callers in shared transactions: one commit, and
/// so one fsync, for every operation that arrived while the previous commit was in progress.
///
/// There is no wait-for-more timer. When the writer is idle, the first operation starts a commit
/// at once; operations that arrive during that commit form the next group. Under load, groups
/// grow by themselves (`flashsale bench queue`: 32 sends per commit with 64 concurrent senders).
///
/// Each operation runs inside its own savepoint: one that throws is rolled back alone and gets
/// its error, while the others in the group commit. An operation's caller resumes only after the
/// group's COMMIT returned, so whatever it wrote is durable under `synchronous = FULL`.
///
/// Hand-written on purpose: GRDB serialises writes but runs each in its own transaction.
final class GroupCommitWriter: Sendable {
    /// One queued operation: `run` executes it inside the group's transaction and keeps its result;
    /// `finish` resumes its caller with that result, or with the commit's error.
    struct Operation: Sendable {
        let run: @Sendable (Database) -> Void
        let finish: @Sendable (Error?) -> Void
    }

    private struct State {
        var pending: [Operation] = []
        var draining = false
    }

    /// Keys (queue ids) that operations of the current group marked as changed; notified after COMMIT.
    private let touched = Mutex(Set<Int64>())
    private let onCommit: @Sendable (Set<Int64>) -> Void

    private let pool: DatabasePool
    private let state = Mutex(State())
    private let statistics = Mutex(WriterStatistics())

    /// - Parameter onCommit: called after each successful COMMIT with the keys its operations touched.
    init(pool: DatabasePool, onCommit: @escaping @Sendable (Set<Int64>) -> Void) {
        self.pool = pool
        self.onCommit = onCommit
    }

    /// Marks `key` as changed by the running transaction; it is announced once that transaction commits.
    func touch(_ key: Int64) {
        touched.withLock { _ = $0.insert(key) }
    }

    /// Counters of the writer: commits and operations.
    var currentStatistics: WriterStatistics { statistics.withLock { $0 } }

    /// Runs `body` in the next group transaction and returns its result once that transaction is durable.
    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            let box = ResultBox<T>()
            let operation = Operation(
                run: { db in
                    do {
                        try db.execute(sql: "SAVEPOINT op")
                        do {
                            box.result = .success(try body(db))
                            try db.execute(sql: "RELEASE SAVEPOINT op")
                        } catch {
                            try? db.execute(sql: "ROLLBACK TO SAVEPOINT op")
                            try? db.execute(sql: "RELEASE SAVEPOINT op")
                            box.result = .failure(error)
                        }
                    } catch {
                        box.result = .failure(error)
                    }
                },
                finish: { commitError in
                    if let commitError {
                        continuation.resume(throwing: commitError)
                    } else {
                        continuation.resume(with: box.result ?? .failure(CancellationError()))
                    }
                })
            enqueue(operation)
        }
    }

    private func enqueue(_ operation: Operation) {
        let startDrain = state.withLock { state -> Bool in
            state.pending.append(operation)
            if state.draining { return false }
            state.draining = true
            return true
        }
        if startDrain {
            pool.asyncWriteWithoutTransaction { [self] db in drain(db) }
        }
    }

    /// Commits groups until no operation is waiting. Runs on GRDB's writer queue.
    private func drain(_ db: Database) {
        while true {
            let group = state.withLock { state -> [Operation] in
                let group = state.pending
                state.pending.removeAll(keepingCapacity: true)
                if group.isEmpty { state.draining = false }
                return group
            }
            if group.isEmpty { return }
            var commitError: Error?
            do {
                try db.execute(sql: "BEGIN IMMEDIATE")
                for operation in group { operation.run(db) }
                try db.execute(sql: "COMMIT")
            } catch {
                commitError = error
                if db.isInsideTransaction { try? db.execute(sql: "ROLLBACK") }
            }
            let keys = touched.withLock { keys -> Set<Int64> in
                defer { keys.removeAll(keepingCapacity: true) }
                return keys
            }
            if commitError == nil, !keys.isEmpty { onCommit(keys) }
            statistics.withLock {
                $0.commits += 1
                $0.operations += group.count
                $0.largestGroup = max($0.largestGroup, group.count)
            }
            for operation in group { operation.finish(commitError) }
        }
    }
}

/// How much the group-commit writer has grouped.
public struct WriterStatistics: Sendable, Hashable {
    /// Transactions committed.
    public var commits = 0
    /// Operations run in them.
    public var operations = 0
    /// The largest group so far.
    public var largestGroup = 0

    /// Mean operations per commit.
    public var averageGroup: Double { commits == 0 ? 0 : Double(operations) / Double(commits) }
}

/// Holds one operation's result between its run and its caller's resumption. Written and read
/// only on GRDB's serial writer queue (run, then finish), never concurrently.
private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, Error>?
}
