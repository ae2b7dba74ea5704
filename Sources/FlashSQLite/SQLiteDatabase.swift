import FlashCore
import FlashQueue
import Foundation
import GRDB
import Synchronization

/// The embedded store: one SQLite file (WAL mode) holding every queue, topic, order, product and
/// the payment ledger, so that an order, its stock reservation and its message commit together.
///
/// Writes go through a group-commit writer (``write(_:)``): concurrent writers share one
/// transaction and one fsync. Reads (``read(_:)``) run concurrently on WAL snapshots.
///
/// ## Durability
/// The default ``Synchronous/full`` makes SQLite fsync the WAL at every commit, so whatever a
/// ``write(_:)`` wrote survives `kill -9` of the process *and* a power loss once the call returns.
/// ``Synchronous/normal`` survives `kill -9` (the OS still holds the written pages) but can lose the
/// last commits on power loss. With group commit it bought nothing measurable on this project's
/// machine (`flashsale bench queue`: 84,321 vs 84,497 msg/s; POST /orders/async: 30,600 vs
/// 28,760 req/s for full vs normal), so `full` stays the default.
///
/// ## One transaction for an order and its message
/// ```swift
/// let messageID = try await database.write { db in
///     try db.execute(sql: "INSERT INTO my_orders ...")
///     return try ordersTopic.publish(body, in: db)   // or queue.send(body, in: db)
/// }
/// ```
/// Both rows commit together or not at all, and long-polling receivers wake after the commit.
public final class SQLiteDatabase: Sendable {
    /// SQLite's `synchronous` setting for the WAL.
    public enum Synchronous: String, Sendable, CaseIterable {
        /// fsync at every commit: durable against process kill and power loss (default).
        case full = "FULL"
        /// fsync at checkpoints only: durable against process kill, not against power loss.
        case normal = "NORMAL"
    }

    /// The file's path.
    public let path: String
    let connection: SQLiteConnection
    let catalog = Mutex(QueueCatalog())

    /// Opens (creating if needed) the database file at `path`. Several processes may open the
    /// same file at once (schema migrations included).
    ///
    /// - Parameter time: where the stores read "now" for the times they keep (leases, delays,
    ///   retention, holds); the wall clock unless a test moves time itself.
    /// The file, its WAL and its shared-memory file are created owner-only (``PrivateFiles``).
    public init(path: String, synchronous: Synchronous = .full, time: TimeSource = .system) throws {
        self.path = path
        PrivateFiles.prepare(path)
        do {
            self.connection = try SQLiteConnection(path: path, synchronous: synchronous, time: time)
        } catch let error as DatabaseError {
            throw OpenError(path: path, error: error)
        }
    }

    /// A database file that could not be opened: names the file, what is wrong and what to do
    /// (SQLite's own message says neither which file nor why).
    public struct OpenError: Error, CustomStringConvertible {
        /// The file asked for.
        public let path: String
        /// What to tell its user.
        public let description: String

        init(path: String, error: DatabaseError) {
            self.path = path
            let directory = (path as NSString).deletingLastPathComponent
            let folder = directory.isEmpty ? "." : directory
            switch error.resultCode {
            case .SQLITE_CANTOPEN:
                self.description = "cannot open the database file \(path): check that the directory \(folder) exists and this user may write in it (and the file, if it exists); or give another path"
            case .SQLITE_NOTADB:
                self.description = "\(path) is not a flashsale database (SQLite: file is not a database); give a new path to make one, or move that file away"
            case .SQLITE_CORRUPT:
                self.description = "the database file \(path) is damaged (SQLite: \(error.message ?? "corrupt")); restore it from a backup, or give a new path"
            case .SQLITE_READONLY, .SQLITE_PERM, .SQLITE_AUTH:
                self.description = "the database file \(path) cannot be written by this user (SQLite: \(error.message ?? "read-only")); fix its owner or mode (and its directory's), or give another path"
            case .SQLITE_FULL:
                self.description = "the disk holding \(path) is full; free space, or give a path on another disk"
            default:
                self.description = "cannot open the database file \(path): SQLite error \(error.resultCode.rawValue): \(error.message ?? "")"
            }
        }
    }

    /// Where this database's stores read "now".
    public var time: TimeSource { connection.time }

    /// Runs `body` in a group-committed transaction; returns once the transaction is durable.
    ///
    /// If `body` throws, its writes are rolled back (and only its), and the error is rethrown.
    /// With a `deadline`, a transaction that cannot begin by then (the writer is behind, or
    /// another process holds the file's write lock) is not run: ``Overloaded``, nothing stored.
    package func write<T: Sendable>(deadline: ContinuousClock.Instant? = nil, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await connection.write(deadline: deadline, body)
    }

    /// Runs `body` on a read-only snapshot, concurrently with writes.
    package func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await connection.read(body)
    }

    /// How many commits and grouped operations the writer has run.
    public var writerStatistics: WriterStatistics { connection.writer.currentStatistics }

    /// Wakes this process's long-polling receivers when another process commits to the file,
    /// until the task is cancelled. See ``SQLiteConnection/watchOtherProcesses(every:)``.
    public func watchOtherProcesses(every interval: Duration) async throws {
        try await connection.watchOtherProcesses(every: interval)
    }

    /// Closes the file. Pending writes finish first.
    public func close() throws {
        try connection.pool.close()
    }
}

/// The open file: the connection pool, the group-commit writer and the arrival signal. Queues,
/// topics and stores hold it (strongly); it holds none of them, so nothing forms a cycle.
final class SQLiteConnection: Sendable {
    let path: String
    let pool: DatabasePool
    let writer: GroupCommitWriter
    let arrivals: ArrivalSignal<Int64>
    /// Where the queues and stores on this file read "now".
    let time: TimeSource

    init(path: String, synchronous: SQLiteDatabase.Synchronous, time: TimeSource) throws {
        var configuration = Configuration()
        // Writers of several processes contend for the file's write lock (`BEGIN IMMEDIATE`):
        // a writer that finds it taken retries every 200 µs until its group's admission
        // deadline, else for up to 60 s, rather than failing with SQLITE_BUSY (``WriteLockWait``).
        let lockWait = WriteLockWait()
        configuration.busyMode = .callback { tries in lockWait.retry(tries: tries) }
        configuration.maximumReaderCount = 4
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous.rawValue)")
        }
        let pool = try DatabasePool(path: path, configuration: configuration)
        try Self.migrate(pool)
        let arrivals = ArrivalSignal<Int64>()
        self.path = path
        self.pool = pool
        self.arrivals = arrivals
        self.time = time
        self.writer = GroupCommitWriter(pool: pool, lockWait: lockWait) { keys in
            for key in keys { arrivals.notify(key) }
        }
    }

    /// Applies the migrations. Two processes opening a new file at once may both try one: each
    /// migration is a transaction, so the loser's fails whole and, retried, finds it applied.
    private static func migrate(_ pool: DatabasePool) throws {
        var attempt = 0
        while true {
            do {
                try SQLiteSchema.migrator.migrate(pool)
                return
            } catch {
                attempt += 1
                if attempt >= 5 { throw error }
                usleep(UInt32(20_000 * attempt))
            }
        }
    }

    /// Runs `body` in the next group transaction (``GroupCommitWriter``); refused with
    /// ``Overloaded`` if that transaction cannot begin by `deadline`.
    func write<T: Sendable>(deadline: ContinuousClock.Instant? = nil, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await writer.write(deadline: deadline, body)
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await pool.read(body)
    }

    /// Cross-process wake-ups. SQLite has no notifications between processes, so this polls:
    /// every `interval` it reads `PRAGMA data_version` on a connection of its own, a number that
    /// changes when any other connection commits to the file. When it has changed, every
    /// long-polling receiver of this process looks again (a read of its queue's earliest
    /// `visible_at`; a receive only if a message is visible). Measured on an idle process
    /// (release build, 2 cores): about 0.3 ms of CPU per tick, wake-up and pragma together, so
    /// 0.9% of a core at 50 ms and 1.8% at 20 ms (docs/ARCHITECTURE.md); the wake-up lags a
    /// commit by at most `interval`. In-process commits wake
    /// receivers directly, without waiting for the poll.
    func watchOtherProcesses(every interval: Duration) async throws {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(5)
        let watcher = try DatabaseQueue(path: path, configuration: configuration)
        defer { try? watcher.close() }
        var last: Int64?
        while !Task.isCancelled {
            // A failed read (the file busy in recovery) is retried at the next tick.
            // Outside a transaction, with a prepared statement: a few microseconds (GRDB's
            // `read` would add BEGIN/COMMIT and a queue hop to every tick).
            if let version = try? watcher.inDatabase({ db in try Int64.fetchOne(db.cachedStatement(sql: "PRAGMA data_version")) }) {
                // The first reading has nothing to compare with: wake everyone once, for commits
                // made before the watcher started.
                if last != version { arrivals.notifyAll() }
                last = version
            }
            try? await Task.sleep(for: interval)
        }
    }
}
