import FlashCore
import FlashBackend
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
/// Some errors (disk full, I/O error) can make SQLite roll back the *whole* transaction, not just
/// the failing statement. The writer checks after every operation that its transaction is still
/// open; if it is gone, every operation that ran in it fails with that error (their writes were
/// undone), and the group's remaining operations run in a new transaction. So no operation runs
/// in autocommit mode by accident, and none is reported failed although it committed.
///
/// An operation may carry an admission deadline (a placement's, see ``Overloaded``): one still
/// waiting for its group at that moment, or whose group cannot get the file's write lock by
/// then (another process holds it), is refused with ``Overloaded`` before its transaction
/// begins, and nothing of it is stored. Once its group holds the lock it runs and is answered
/// with the truth. An operation without a deadline waits up to ``WriteLockWait/longest`` from
/// when it was queued, then fails with ``BackendUnavailable`` (nothing stored). A `BEGIN
/// IMMEDIATE` waiting for the lock gives up at the earliest of these limits, the group's and
/// those of the operations queued behind it, so that none is answered late.
///
/// An operation with a deadline that the ``line`` foretells would not begin by then (the groups
/// ahead of it take too long, or the store has answered nothing for as long as it may wait) is
/// refused on arrival, before it joins the line. A group takes at most ``maxGroup`` operations,
/// so that a group's time, and so the forecast, stays bounded under overload.
///
/// Hand-written on purpose: GRDB serialises writes but runs each in its own transaction.
final class GroupCommitWriter: Sendable {
    /// One queued operation: `run` executes it inside the group's transaction, keeps its result
    /// and says how it ended; `finish` resumes its caller with that result, or with the error
    /// that undid its transaction.
    struct Operation: Sendable {
        let run: @Sendable (Database) -> End
        let finish: @Sendable (Error?) -> Void
        /// Refused with ``Overloaded`` if its transaction cannot begin by then.
        let deadline: ContinuousClock.Instant?
        /// When it was queued.
        let queuedAt: ContinuousClock.Instant

        /// When it is refused if its transaction has not begun.
        var expiry: ContinuousClock.Instant { deadline ?? queuedAt + WriteLockWait.longest }

        /// Why it is refused at its expiry: nothing of it was stored.
        func refusal(at now: ContinuousClock.Instant) -> Error {
            if deadline != nil { return Overloaded(waited: now - queuedAt) }
            return BackendUnavailable(reason: "the database file's write lock stayed taken (by another process) for \(WriteLockWait.longest.shortDescription)")
        }
    }

    /// How an operation's run ended.
    enum End {
        /// Its writes stand (until the group commits).
        case succeeded
        /// It failed and its savepoint was rolled back: the group goes on.
        case failed(Error)
        /// It failed and its writes could not be undone on their own: the whole transaction
        /// must be rolled back (SQLite may already have done so).
        case poisoned(Error)
    }

    private struct State {
        var pending: [Operation] = []
        var draining = false
    }

    /// Keys (queue ids) that operations of the current group marked as changed; notified after COMMIT.
    private let touched = Mutex(Set<Int64>())
    /// Stored-counter changes of the running operation and of its group; written once per
    /// counter just before COMMIT (see ``addToCounter(_:_:)``).
    private let counters = Mutex(CounterDeltas())
    private let onCommit: @Sendable (Set<Int64>) -> Void

    private let pool: DatabasePool
    private let lockWait: WriteLockWait
    /// Admission control's view of the line: groups, forecasts and placements' waits.
    let line: AdmissionLine

    /// The most operations in one group: as many as the PostgreSQL store's placement groups.
    /// Measured (`flashsale bench queue`): groups of 32 with 64 concurrent senders, so the cap
    /// bites only under overload, where it keeps one group's time, and the lock's hold, short.
    static let maxGroup = 512
    private let state = Mutex(State())
    private let statistics = Mutex(WriterStatistics())

    /// - Parameters:
    ///   - lockWait: the busy handler's limit, which the writer sets before each `BEGIN IMMEDIATE`.
    ///   - onCommit: called after each successful COMMIT with the keys its operations touched.
    init(pool: DatabasePool, lockWait: WriteLockWait, onCommit: @escaping @Sendable (Set<Int64>) -> Void) {
        self.pool = pool
        self.lockWait = lockWait
        self.onCommit = onCommit
        self.line = AdmissionLine(groupLimit: Self.maxGroup)
    }

    /// Marks `key` as changed by the running transaction; it is announced once that transaction commits.
    func touch(_ key: Int64) {
        touched.withLock { _ = $0.insert(key) }
    }

    /// Adds `amount` to the stored counter `name` (`fs_counters`) in the running transaction. Call
    /// it only inside ``write(_:)``. The change commits with the operation's other writes or not
    /// at all, but is written once per counter per group, just before COMMIT: a hundred orders
    /// moving in one group cost one counter statement, not a hundred.
    func addToCounter(_ name: String, _ amount: Int) {
        counters.withLock { $0.operation[name, default: 0] += amount }
    }

    /// Counters of the writer: commits and operations.
    var currentStatistics: WriterStatistics { statistics.withLock { $0 } }

    /// Operations waiting for the next group (tests use it to build a group in a known order).
    var waitingOperations: Int { state.withLock { $0.pending.count } }

    /// Runs `body` in the next group transaction and returns its result once that transaction is durable.
    ///
    /// The transaction statements are prepared once (`cachedStatement`): `execute(sql:)` parses
    /// its SQL on every call, and the savepoint pair around each operation cost more than the
    /// order's own insert (callgrind, issue 13).
    ///
    /// - Parameter deadline: refuse the operation (``Overloaded``) if its transaction cannot
    ///   begin by then; nil waits for the write lock up to ``WriteLockWait/longest``.
    func write<T: Sendable>(deadline: ContinuousClock.Instant? = nil, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            let box = ResultBox<T>()
            let operation = Operation(
                run: { db in
                    do {
                        try db.cachedStatement(sql: "SAVEPOINT op").execute()
                    } catch {
                        box.result = .failure(error)
                        return .poisoned(error)
                    }
                    do {
                        box.result = .success(try body(db))
                        try db.cachedStatement(sql: "RELEASE SAVEPOINT op").execute()
                        self.counters.withLock { $0.keepOperation() }
                        return .succeeded
                    } catch let bodyError {
                        box.result = .failure(bodyError)
                        self.counters.withLock { $0.operation.removeAll() }
                        do {
                            try db.cachedStatement(sql: "ROLLBACK TO SAVEPOINT op").execute()
                            try db.cachedStatement(sql: "RELEASE SAVEPOINT op").execute()
                            return .failed(bodyError)
                        } catch {
                            // The savepoint is gone (SQLite rolled the transaction back) or cannot
                            // be undone: releasing it would commit half an operation.
                            return .poisoned(bodyError)
                        }
                    }
                },
                finish: { commitError in
                    if let commitError {
                        continuation.resume(throwing: commitError)
                    } else {
                        continuation.resume(with: box.result ?? .failure(CancellationError()))
                    }
                },
                deadline: deadline, queuedAt: .now)
            enqueue(operation)
        }
    }

    private func enqueue(_ operation: Operation) {
        let startDrain = state.withLock { state -> Bool? in
            if let deadline = operation.deadline,
               !line.admits(ahead: state.pending.count, running: state.draining, deadline: deadline, at: operation.queuedAt) {
                return nil
            }
            state.pending.append(operation)
            // A group waiting for the file's lock gives up in time to refuse this one at its expiry.
            if state.draining { lockWait.lower(to: operation.expiry) }
            if state.draining { return false }
            state.draining = true
            return true
        }
        switch startDrain {
        case nil: operation.finish(Overloaded.onArrival)
        case true?: pool.asyncWriteWithoutTransaction { [self] db in drain(db) }
        case false?: break
        }
    }

    /// Commits groups until no operation is waiting. Runs on GRDB's writer queue.
    ///
    /// Before each group's transaction, the operations past their expiry are refused; the
    /// group's `BEGIN IMMEDIATE` waits for the write lock no longer than the earliest expiry left
    /// (of the group, or of an operation queued meanwhile). When it gives up there, the group
    /// goes round again: the expired are refused, the others try again with those queued since.
    private func drain(_ db: Database) {
        var carried: [Operation] = []
        while true {
            let (group, expiredBehind) = state.withLock { state -> ([Operation], [Operation]) in
                // Those past their expiry leave the whole line, not only the next group: one
                // waiting beyond it would otherwise set the lock wait (below) to a past instant
                // and be refused only once its turn came.
                let now = ContinuousClock.now
                var expired: [Operation] = []
                if state.pending.count > Self.maxGroup - carried.count {
                    state.pending.removeAll { operation in
                        guard operation.expiry <= now else { return false }
                        expired.append(operation)
                        return true
                    }
                }
                let taken = min(state.pending.count, max(0, Self.maxGroup - carried.count))
                let group = carried + state.pending.prefix(taken)
                state.pending.removeFirst(taken)
                if group.isEmpty { state.draining = false }
                return (group, expired)
            }
            carried = []
            if !expiredBehind.isEmpty {
                let now = ContinuousClock.now
                for operation in expiredBehind { operation.finish(operation.refusal(at: now)) }
            }
            if group.isEmpty {
                line.stopped()
                return
            }
            let now = ContinuousClock.now
            var admitted: [Operation] = []
            admitted.reserveCapacity(group.count)
            for operation in group {
                if operation.expiry <= now {
                    operation.finish(operation.refusal(at: now))
                } else {
                    admitted.append(operation)
                }
            }
            if admitted.isEmpty { continue }
            // Only a group with work to do counts: refusing the expired is not the store stalling.
            line.groupStarted()
            let groupExpiry = admitted.lazy.map(\.expiry).min()!
            state.withLock { state in
                lockWait.set(until: state.pending.lazy.map(\.expiry).reduce(groupExpiry, min))
            }
            let outcome = commit(admitted, db)
            lockWait.set(until: nil)
            guard let (failures, anyCommitted) = outcome else {
                carried = admitted
                continue
            }
            line.groupEnded()
            let keys = touched.withLock { keys -> Set<Int64> in
                defer { keys.removeAll(keepingCapacity: true) }
                return keys
            }
            if anyCommitted, !keys.isEmpty { onCommit(keys) }
            statistics.withLock {
                $0.commits += 1
                $0.operations += admitted.count
                $0.largestGroup = max($0.largestGroup, admitted.count)
            }
            for (operation, failure) in zip(admitted, failures) { operation.finish(failure) }
        }
    }

    /// Runs a group in as few transactions as SQLite allows (one, unless a transaction is rolled
    /// back under an operation). Returns, per operation, the error that undid its writes (nil when
    /// they committed), and whether any transaction committed; nil when the first `BEGIN IMMEDIATE`
    /// gave up waiting for the write lock at an operation's expiry (nothing ran).
    private func commit(_ group: [Operation], _ db: Database) -> ([Error?], Bool)? {
        var failures = [Error?](repeating: nil, count: group.count)
        var anyCommitted = false
        var first = 0
        while first < group.count {
            do {
                try db.cachedStatement(sql: "BEGIN IMMEDIATE").execute()
                if first == 0 {
                    let began = ContinuousClock.now
                    for operation in group where operation.deadline != nil {
                        line.began(waited: began - operation.queuedAt, at: began)
                    }
                }
            } catch {
                // Given up at an expiry: the expired are refused, the others try again.
                let busy = (error as? DatabaseError)?.resultCode == .SQLITE_BUSY
                if busy, first == 0, lockWait.gaveUpAtDeadline { return nil }
                // Nothing of these ran: refused (503), not an internal error.
                let failure: Error = busy ? BackendUnavailable(reason: "the database file's write lock is taken (by another process)") : error
                for index in first..<group.count { failures[index] = failure }
                break
            }
            var next = first
            var lost: Error?
            while next < group.count {
                let end = group[next].run(db)
                next += 1
                if case let .poisoned(error) = end {
                    lost = error
                } else if !db.isInsideTransaction {
                    // SQLite rolled the whole transaction back under this operation.
                    if case let .failed(error) = end { lost = error }
                    lost = lost ?? DatabaseError(resultCode: .SQLITE_ABORT, message: "the transaction was rolled back")
                }
                if lost != nil { break }
            }
            if lost == nil {
                do {
                    try flushCounters(db)
                } catch {
                    lost = error
                }
            }
            counters.withLock { $0 = CounterDeltas() }
            if let lost {
                if db.isInsideTransaction { rollBack(db) }
                for index in first..<next { failures[index] = lost }
            } else {
                do {
                    try db.cachedStatement(sql: "COMMIT").execute()
                    anyCommitted = true
                } catch {
                    if db.isInsideTransaction { rollBack(db) }
                    for index in first..<next { failures[index] = error }
                }
            }
            first = next
        }
        return (failures, anyCommitted)
    }

    /// Writes the group's counter changes, one statement per counter.
    private func flushCounters(_ db: Database) throws {
        let deltas = counters.withLock { $0.group }
        for (name, amount) in deltas where amount != 0 {
            try db.cachedStatement(sql: """
                INSERT INTO fs_counters (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = value + ?2
                """).execute(arguments: [name, amount])
        }
    }

    /// Rolls the open transaction back. If even that fails, the connection is stuck inside a
    /// transaction and every later write would fail: stop the process, so that it restarts on a
    /// clean connection (nothing uncommitted was acknowledged).
    private func rollBack(_ db: Database) {
        try? db.execute(sql: "ROLLBACK")
        if db.isInsideTransaction { try? db.execute(sql: "ROLLBACK") }
        if db.isInsideTransaction { fatalError("SQLite connection stuck inside a transaction after ROLLBACK failed twice") }
    }
}

/// Counter changes not yet written: the running operation's (dropped if its savepoint is rolled
/// back) and its group's (written before COMMIT, dropped with a rolled-back transaction).
struct CounterDeltas {
    var operation: [String: Int] = [:]
    var group: [String: Int] = [:]

    mutating func keepOperation() {
        for (name, amount) in operation { group[name, default: 0] += amount }
        operation.removeAll(keepingCapacity: true)
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
