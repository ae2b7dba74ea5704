import FlashBackend
import FlashCore
import FlashQueue
import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import _ConnectionPoolModule
import Synchronization

/// One PostgreSQL database (or one schema in it) as flashsale uses it: a connection pool
/// (postgres-nio's `PostgresClient`), the schema migrated at open, the queues and topics opened
/// so far, and the LISTEN connection that wakes this process's long polls when any process
/// sends.
///
/// Every call goes through ``transaction(_:)`` or ``query(_:)``, which bound the wait for a
/// connection and turn a lost server into ``BackendUnavailable`` (the API's 503), and retry
/// deadlocks and serialization failures. The pool reconnects by itself.
public final class PostgresDatabase: Sendable {
    /// Where the database is and how to use it.
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var username: String
        public var password: String?
        public var database: String
        /// The schema flashsale's tables live in (`?schema=` in the URL; PostgreSQL's default when nil).
        public var schema: String?
        /// TLS: `?sslmode=disable|prefer|require` (default `prefer`, as libpq).
        public var sslMode: String
        /// Connections in this process's pool.
        public var maxConnections: Int
        /// The longest a call waits for the database (a connection, then its statements) before
        /// it fails with ``BackendUnavailable``.
        public var operationTimeout: Duration
        /// Where the stores read "now" for the times they keep (leases, delays, retention,
        /// holds): the wall clock unless a test moves time itself. Every process sharing the
        /// database must read the same wall clock, as they do with ``TimeSource/system``.
        public var time: TimeSource = .system

        public init(host: String = "127.0.0.1", port: Int = 5432, username: String = "postgres", password: String? = nil,
                    database: String = "postgres", schema: String? = nil, sslMode: String = "prefer",
                    maxConnections: Int = 16, operationTimeout: Duration = .seconds(3)) {
            self.host = host
            self.port = port
            self.username = username
            self.password = password
            self.database = database
            self.schema = schema
            self.sslMode = sslMode
            self.maxConnections = maxConnections
            self.operationTimeout = operationTimeout
        }

        /// Reads `postgres://user:password@host:port/database?schema=…&sslmode=…&pool=…`
        /// (`postgresql://` too), as libpq and postgres-nio users write it.
        public init(url text: String) throws {
            guard let url = URLComponents(string: text), let scheme = url.scheme, ["postgres", "postgresql"].contains(scheme),
                  let host = url.host, !host.isEmpty
            else { throw DatabaseURLError(message: "expected postgres://user:password@host:port/database") }
            self.init(host: host, port: url.port ?? 5432,
                      username: url.user.flatMap { $0.removingPercentEncoding } ?? "postgres",
                      password: url.password.flatMap { $0.removingPercentEncoding })
            let path = url.path.hasPrefix("/") ? String(url.path.dropFirst()) : url.path
            database = path.isEmpty ? username : (path.removingPercentEncoding ?? path)
            for item in url.queryItems ?? [] {
                switch item.name {
                case "schema", "search_path": schema = item.value
                case "sslmode": sslMode = item.value ?? "prefer"
                case "pool":
                    guard let value = item.value.flatMap(Int.init), value >= 2 else { throw DatabaseURLError(message: "pool must be a number ≥ 2") }
                    maxConnections = value
                default: break
                }
            }
            guard ["disable", "prefer", "require"].contains(sslMode) else { throw DatabaseURLError(message: "sslmode must be disable, prefer or require") }
            if let schema, schema.isEmpty || !schema.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) {
                throw DatabaseURLError(message: "schema must be letters, digits and underscores")
            }
        }

        /// The URL without its password, for logs.
        public var redacted: String {
            "postgres://\(username)@\(host):\(port)/\(database)" + (schema.map { "?schema=\($0)" } ?? "")
        }
    }

    /// The database could not be opened: unreachable, refused the login, or failed a migration.
    public struct StartupError: Error, CustomStringConvertible {
        public var url: String
        public var underlying: any Error
        public var description: String {
            // postgres-nio keeps details out of `description` (they may hold data); the server's
            // message is what an operator needs here, and it holds no password.
            let detail = (underlying as? PSQLError).map { error in
                [error.serverInfo?[.sqlState].map { "SQLSTATE \($0)" } ?? "\(error.code)", error.serverInfo?[.message],
                 error.underlying.map { "\($0)" }]
                    .compactMap { $0 }.joined(separator: ": ")
            } ?? "\(underlying)"
            return "cannot open PostgreSQL at \(url): \(detail.isEmpty ? "\(underlying)" : detail)"
        }

        /// Whether the server could not be reached (it may answer in a moment), rather than
        /// refused this process (a wrong password or database, a failed migration).
        public var isUnreachable: Bool {
            // The server answered, and refused: unless it said it is starting, stopping or full,
            // asking again will not change its answer.
            if let error = underlying as? PSQLError, error.code == .server {
                return PostgresDatabase.translate(error) is BackendUnavailable
            }
            // TLS the server does not offer (sslmode=require): asking again changes nothing.
            if let error = underlying as? PSQLError, error.code == .sslUnsupported || error.code == .failedToAddSSLHandler { return false }
            // No answer, a refused or lost connection, no connection in time.
            return PostgresDatabase.translate(underlying) is BackendUnavailable || underlying is IOError
                || underlying is NIOConnectionError || underlying is ChannelError
        }
    }

    /// A malformed `--database` URL.
    public struct DatabaseURLError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { "invalid database URL: \(message)" }
    }

    public let configuration: Configuration
    /// Where this database's stores read "now" (``Configuration/time``).
    public var time: TimeSource { configuration.time }
    let client: PostgresClient
    let logger: Logger
    /// The connections' event loops, and a task executor for each.
    private let loops: MultiThreadedEventLoopGroup
    private let loopExecutors: LoopExecutors
    /// Bumped per queue when a message may have become visible: by this process's own commits at
    /// once, by other processes' through NOTIFY.
    let arrivals = ArrivalSignal<Int64>()
    /// The NOTIFY channel of this database (and schema).
    let channel: String
    let catalog = Mutex(PostgresCatalog())
    private let tasks = Mutex<[Task<Void, Never>]>([])
    /// Until when (Unix ms) calls fail at once: set when the server was just found unreachable,
    /// so that during an outage requests get their 503 now rather than after the timeout. A call
    /// after that instant probes the server again.
    private let unreachableUntil = Atomic<Int64>(0)
    private let closed = Mutex(false)
    /// The calls running (see `bounded`), by number.
    private let inFlight = Mutex<[UInt64: Task<Void, Never>]>([:])
    private let workIDs = Atomic<UInt64>(0)
    /// Queues touched since the last NOTIFY, and whether ``announce()`` is running.
    private let unannounced = Mutex<(queues: Set<Int64>, sending: Bool)>(([], false))

    /// Connects, applies the schema's migrations (under an advisory lock, so processes starting
    /// together apply each once) and starts listening for other processes' sends.
    public init(configuration: Configuration, logger: Logger = Logger(label: "flashsale.postgres")) async throws {
        self.configuration = configuration
        self.logger = logger
        let tls: PostgresClient.Configuration.TLS = switch configuration.sslMode {
        case "disable": .disable
        case "require": .require(.makeClientConfiguration())
        default: .prefer(.makeClientConfiguration())
        }
        var config = PostgresClient.Configuration(
            host: configuration.host, port: configuration.port, username: configuration.username,
            password: configuration.password, database: configuration.database, tls: tls)
        config.options.maximumConnections = configuration.maxConnections
        config.options.connectTimeout = .seconds(2)
        // The server gives up a statement before this process gives up the call: a statement
        // still running when the call's deadline closes its connection (waiting on a hot row's
        // lock, say) could otherwise commit after the caller was told 503.
        var options = "-c statement_timeout=\(Self.statementTimeout(configuration.operationTimeout).asMilliseconds)"
        if let schema = configuration.schema { options += " -c search_path=\(schema)" }
        config.options.additionalStartupParameters = [("options", options)]
        // The pool's connections get event loops of their own: a transaction's statements then
        // never wait behind the HTTP server's I/O (see `bounded`).
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        self.loops = loops
        self.loopExecutors = LoopExecutors(loops)
        let client = PostgresClient(configuration: config, eventLoopGroup: loops, backgroundLogger: logger)
        self.client = client
        self.channel = "flashsale_" + (configuration.schema ?? "public")
        do {
            try await Self.connectOnce(configuration, options: options, on: loops.next(), logger: logger)
        } catch {
            try? await loops.shutdownGracefully()
            throw StartupError(url: configuration.redacted, underlying: error)
        }
        // The pool runs from here until shutdown, so the database works before (and outside) a
        // service group: queues and the catalog are opened while the process composes itself.
        tasks.withLock { $0.append(Task { await client.run() }) }
        do {
            try await PostgresSchema.migrate(self)
        } catch {
            await shutdown()
            throw StartupError(url: configuration.redacted, underlying: error)
        }
        let listener = Task { [weak self] in
            guard let self else { return }
            await self.listen()
        }
        tasks.withLock { $0.append(listener) }
    }

    /// One connection of its own, opened and closed before the pool's first: it fails within
    /// the connect timeout and with the server's reason (no such database, a wrong password),
    /// where the pool would retry a failing connection until the call's deadline and report
    /// only "no answer".
    private static func connectOnce(_ configuration: Configuration, options: String, on loop: any EventLoop, logger: Logger) async throws {
        let tls: PostgresConnection.Configuration.TLS = switch configuration.sslMode {
        case "disable": .disable
        case "require": .require(try .init(configuration: .makeClientConfiguration()))
        default: .prefer(try .init(configuration: .makeClientConfiguration()))
        }
        var config = PostgresConnection.Configuration(host: configuration.host, port: configuration.port, username: configuration.username,
                                                      password: configuration.password, database: configuration.database, tls: tls)
        config.options.connectTimeout = .seconds(2)
        config.options.additionalStartupParameters = [("options", options)]
        let connection = try await PostgresConnection.connect(on: loop, configuration: config, id: 0, logger: logger)
        try? await connection.close()
    }

    /// Drops this configuration's schema and everything in it (benchmarks and tests that made a
    /// throwaway one). Refuses when no schema was named: the default schema is never dropped.
    public func dropSchema() async throws {
        guard let schema = configuration.schema else { return }
        // The name was checked to be letters, digits and underscores; identifiers cannot be bound.
        try await query("DROP SCHEMA IF EXISTS \(unescaped: "\"" + schema + "\"") CASCADE")
    }

    /// Stops listening and closes every connection; idempotent.
    public func shutdown() async {
        guard !closed.withLock({ closed in defer { closed = true }; return closed }) else { return }
        let running = tasks.withLock { tasks in defer { tasks = [] }; return tasks }
        for task in running { task.cancel() }
        for task in running { await task.value }
        // Every connection closed with the pool's run, so calls still in flight fail at once;
        // they end (on the loops) before the loops stop.
        let calls = inFlight.withLock { Array($0.values) }
        for call in calls { await call.value }
        try? await loops.shutdownGracefully()
    }

    // MARK: Running statements

    /// Runs `body` in one transaction (BEGIN … COMMIT; rolled back if it throws). Deadlocks and
    /// serialization failures are retried; a lost or unreachable server, or no answer within
    /// ``Configuration/operationTimeout``, throws ``BackendUnavailable``.
    func transaction<T: Sendable>(timeout: Duration? = nil, _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await withRetries {
            try await self.bounded(timeout: timeout) { connection, call in
                try await connection.query("BEGIN", logger: self.logger)
                do {
                    if let timeout {
                        let milliseconds = Self.statementTimeout(timeout).asMilliseconds
                        try await connection.query("SELECT set_config('statement_timeout', \(String(milliseconds)), true)", logger: self.logger)
                    }
                    let result = try await body(connection)
                    // Until here a lost connection rolls the transaction back; from here it may commit.
                    // A call whose deadline has passed sends no COMMIT: its caller heard "nothing stored".
                    guard call.mayCommit() else { throw TimeoutError(limit: timeout ?? self.configuration.operationTimeout) }
                    // COMMIT of a transaction that an error aborted answers "ROLLBACK", not an error.
                    let tag = try await connection.query("COMMIT", logger: self.logger).get().metadata.command
                    guard tag == "COMMIT" else { throw TransactionRolledBack(tag: tag) }
                    return result
                } catch {
                    // A failed ROLLBACK means the connection is gone: the server rolls back.
                    _ = try? await connection.query("ROLLBACK", logger: self.logger)
                    throw error
                }
            }
        }
    }

    /// The server-side limit of one statement within a call of `limit`: 80% of it, so that the
    /// server's cancellation (a clean rollback) comes before the call's deadline.
    static func statementTimeout(_ limit: Duration) -> Duration {
        .milliseconds(max(1, limit.asMilliseconds * 4 / 5))
    }

    /// Runs `body` on one connection without BEGIN/COMMIT: each of its statements commits by
    /// itself, and this returns once the last one's commit is confirmed (see
    /// ``confirmCommitted(on:)``). Retries and failures as ``transaction(timeout:_:)``.
    func statement<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await withRetries {
            try await self.bounded { connection, call in
                // The statement commits by itself: from its sending on, a lost connection leaves
                // its outcome unknown. (So `body` runs one statement: after a first one committed,
                // an error of a second could not be told apart.)
                guard call.mayCommit() else { throw TimeoutError(limit: self.configuration.operationTimeout) }
                let result = try await body(connection)
                try await self.confirmCommitted(on: connection)
                return result
            }
        }
    }

    /// Runs one statement (atomic by itself), collects its rows, and confirms its commit.
    @discardableResult
    func query(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try await statement { connection in
            try await connection.query(query, logger: self.logger).get().rows
        }
    }

    /// Runs one statement that writes nothing and collects its rows: no commit to confirm, so one
    /// round trip fewer than ``query(_:)``.
    func read(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try await withRetries {
            try await self.bounded { connection, _ in
                try await connection.query(query, logger: self.logger).get().rows
            }
        }
    }

    /// Returns once the server has committed the implicit transaction of the last statement run
    /// on `connection`; throws ``BackendUnavailable`` when that cannot be known.
    ///
    /// Why: postgres-nio ends a statement at the server's CommandComplete. Outside BEGIN … COMMIT
    /// the server sends that *before* it commits (the commit runs at the protocol's Sync), so a
    /// commit that fails afterwards (the server shutting down, a deferred constraint) would
    /// otherwise read as success: seen as orders answered 202 and never stored across a
    /// PostgreSQL restart. A connection runs its next statement only after the server's
    /// ReadyForQuery, which follows the commit: a trivial statement answered proves the commit;
    /// a connection lost first leaves it unknown, which the caller is told as "unavailable"
    /// (the API's 503 "not acknowledged": a repeat with the same key settles it).
    private func confirmCommitted(on connection: PostgresConnection) async throws {
        do {
            _ = try await connection.query("SELECT 1", logger: logger).get()
        } catch {
            throw UnconfirmedCommit(underlying: error)
        }
    }

    private func withRetries<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        if WallClock.nowMillis() < unreachableUntil.load(ordering: .relaxed) {
            throw BackendUnavailable(reason: "PostgreSQL was unreachable moments ago")
        }
        var attempt = 0
        while true {
            do {
                return try await operation()
            } catch {
                if Self.isRetryable(error), attempt < 5 {
                    attempt += 1
                    try await Task.sleep(for: .milliseconds(Int64.random(in: 1...(5 << attempt))))
                    continue
                }
                let translated = Self.translate(error)
                if Self.meansUnreachable(error) { unreachableUntil.store(WallClock.nowMillis() + 500, ordering: .relaxed) }
                throw translated
            }
        }
    }

    /// Leases a connection and runs `body` on it: the wait for a connection gets half of
    /// ``Configuration/operationTimeout`` (or `timeout`), and `body` gets all of it from the
    /// moment it has one (so a call ends within 1.5 times the limit). `body` runs on the connection's event loop (``EventLoopTaskExecutor``):
    /// between its statements it does not queue behind other work on Swift's global executor.
    ///
    /// The two limits are separate so that the server always gives a statement up first: it
    /// cancels a statement at 80% of the limit from the statement's start (`statement_timeout`),
    /// and the call's own deadline counts from when its statements could start. A deadline that
    /// also counted the wait for a connection could close a connection whose statement, waiting
    /// on a hot row's lock, then went on to commit after its caller was told 503 (PostgreSQL does
    /// not notice a closed socket while a statement waits on a lock).
    ///
    /// postgres-nio does not abandon a statement when its task is cancelled (it waits for the
    /// server's answer), so a deadline alone cannot free a caller whose statement hangs on a
    /// connection that died without a reset, or on a server that stopped. At the deadline the
    /// connection in use is closed: its statement fails at once, the caller gets
    /// ``BackendUnavailable``, and the pool opens a fresh connection. Hand-written: neither
    /// postgres-nio nor FlashCore's `withTimeout` (which waits for its operation) does this.
    ///
    /// What the caller is told follows ``Call/mayCommit()``: a failure without a server's answer
    /// after `body` marked that its commit may be under way is ``BackendUnavailable/Outcome/unknown``.
    private func bounded<T: Sendable>(timeout: Duration? = nil,
                                      _ body: @escaping @Sendable (PostgresConnection, Call) async throws -> T) async throws -> T {
        let call = Call()
        let answer = FirstAnswer<T>()
        let limit = timeout ?? configuration.operationTimeout
        let clock = ContinuousClock()
        let started = clock.now
        // Not a task group: a group waits for every child, and the point is not to wait for a
        // statement that does not end. Tracked, so that shutdown lets it end before the
        // connections' event loops stop.
        let id = workIDs.add(1, ordering: .relaxed).newValue
        let work = inFlight.withLock { inFlight in
            let work = Task {
                defer { self.inFlight.withLock { _ = $0.removeValue(forKey: id) } }
                do {
                    let result = try await self.client.withConnection { connection in
                        // A connection that came after the call gave up waiting for one is not used.
                        guard call.begin(on: connection, at: clock.now) else { throw TimeoutError(limit: limit) }
                        let outcome: Result<T, any Error>
                        do {
                            outcome = .success(try await withTaskExecutorPreference(self.loopExecutors.executor(for: connection.eventLoop)) {
                                try await body(connection, call)
                            })
                        } catch {
                            outcome = .failure(error)
                        }
                        // A connection the deadline is closing goes back to the pool closed, never
                        // to another call that its close would cut.
                        if call.end() { try? await connection.close() }
                        return try outcome.get()
                    }
                    answer.give(.success(result))
                } catch {
                    answer.give(.failure(call.verdict(on: error)))
                }
            }
            inFlight[id] = work
            return work
        }
        let deadline = Task { [logger] in
            guard (try? await Task.sleep(until: started + limit / 2, clock: clock)) != nil else { return }
            // The wait for a connection is over; the statements, if they started, get their own limit.
            if let began = call.beganOrAbandon(), began + limit > clock.now {
                guard (try? await Task.sleep(until: began + limit, clock: clock)) != nil else { return }
            }
            // Decided at once with the work's commit point: either its COMMIT (or autocommitted
            // statement) was already marked, and the answer is "unknown", or it is never sent.
            guard answer.give(.failure(call.expire(limit: limit))) else { return }
            work.cancel()
            if let stuck = call.claimForClosing() {
                logger.warning("closing a PostgreSQL connection that did not answer in time", metadata: ["limit": "\(limit)"])
                try? await stuck.close()
            }
        }
        defer { deadline.cancel() }
        return try await withTaskCancellationHandler {
            try await answer.value()
        } onCancel: {
            work.cancel()
        }
    }

    /// SQLSTATE of a server error, if `error` is one.
    static func sqlState(_ error: any Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    /// Deadlock detected, serialization failure: the transaction can run again as it is.
    static func isRetryable(_ error: any Error) -> Bool {
        guard let state = sqlState(error) else { return false }
        return state == "40P01" || state == "40001"
    }

    /// A check constraint refused a row.
    static func isCheckViolation(_ error: any Error) -> Bool {
        sqlState(error) == "23514"
    }

    /// A unique constraint refused a row (another process stored it first).
    static func isUniqueViolation(_ error: any Error) -> Bool {
        sqlState(error) == "23505"
    }

    /// Whether `error` says the server cannot be reached (no connection could be made, a
    /// connection was lost, the server is shutting down), so that the calls of the next moment
    /// should fail at once. A call that was merely slow says nothing about the others: a
    /// statement the server gave up (`statement_timeout`: one slow read) or a deadline passed
    /// (a transaction waiting on a hot row) must not turn every request of the process away.
    static func meansUnreachable(_ error: any Error) -> Bool {
        if let unconfirmed = error as? UnconfirmedCommit { return meansUnreachable(unconfirmed.underlying) }
        if let state = sqlState(error) { return state.hasPrefix("08") || state.hasPrefix("57P") || state == "53300" }
        if error is ConnectionPoolError { return true }
        guard let error = error as? PSQLError else { return false }
        switch error.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed: return true
        default: return false
        }
    }

    /// Errors that mean "the database cannot be reached now" become ``BackendUnavailable``;
    /// others pass unchanged.
    static func translate(_ error: any Error) -> any Error {
        if error is BackendUnavailable || error is CancellationError { return error }
        if let unconfirmed = error as? UnconfirmedCommit {
            return BackendUnavailable(reason: "\(unconfirmed.underlying is TimeoutError ? "no answer" : "connection lost") after a commit may have been sent (\(translate(unconfirmed.underlying)))",
                                      outcome: .unknown)
        }
        if let timeout = error as? TimeoutError { return BackendUnavailable(reason: "no answer from PostgreSQL within \(timeout.limit.shortDescription)") }
        if error is ConnectionPoolError { return BackendUnavailable(reason: "no connection to PostgreSQL (\(error))") }
        if let error = error as? PSQLError {
            switch error.code {
            case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed,
                 .sslUnsupported, .failedToAddSSLHandler, .queryCancelled:
                return BackendUnavailable(reason: "PostgreSQL connection lost (\(error.code))")
            case .server:
                // Class 08: connection exception; 57P0x: the server is shutting down or starting;
                // 53300: too many connections.
                // 57014: a statement ran past statement_timeout (the server rolled it back).
                if let state = error.serverInfo?[.sqlState], state.hasPrefix("08") || state.hasPrefix("57P") || state == "53300" || state == "57014" {
                    return BackendUnavailable(reason: "PostgreSQL unavailable (SQLSTATE \(state))")
                }
            default:
                break
            }
        }
        return error
    }

    // MARK: Wake-ups

    /// Wakes this process's long polls on these queues at once, and other processes' through a
    /// NOTIFY sent after the commit that made the messages visible (see ``announce()``).
    func touched(_ queueIDs: some Sequence<Int64>) {
        var ids: [Int64] = []
        for id in queueIDs {
            arrivals.notify(id)
            ids.append(id)
        }
        guard !ids.isEmpty else { return }
        let start = unannounced.withLock { pending in
            pending.queues.formUnion(ids)
            guard !pending.sending else { return false }
            pending.sending = true
            return true
        }
        if start { Task { await self.announce() } }
    }

    /// Sends the pending NOTIFYs, one statement for every queue touched since the last one, until
    /// none is pending.
    ///
    /// Why not NOTIFY inside the transaction that sends: PostgreSQL serialises every committing
    /// transaction that has notified (a database-wide lock held through its WAL flush), so
    /// notifying senders cannot share a flush. Measured here: 64 concurrent single-message senders
    /// made 2.1k sends/s that way, against pgbench's ~15k single-row INSERTs/s. Out of the
    /// transaction, only this one statement at a time takes that lock, and a burst of sends
    /// costs one NOTIFY. A NOTIFY lost to a crash between the commit and this statement delays
    /// other processes' pickup by at most their once-a-second poll; nothing is lost.
    private func announce() async {
        while true {
            let ids: [Int64] = unannounced.withLock { pending in
                let ids = Array(pending.queues)
                pending.queues = []
                if ids.isEmpty { pending.sending = false }
                return ids
            }
            guard !ids.isEmpty else { return }
            // Not through `query`: a background statement must not mark the server unreachable
            // (that fails every request for a moment), and while it is marked, there is no point.
            guard WallClock.nowMillis() >= unreachableUntil.load(ordering: .relaxed) else { continue }
            do {
                let statement: PostgresQuery = "SELECT pg_notify(\(channel), q.id::text) FROM unnest(\(ids)::bigint[]) AS q(id)"
                _ = try await bounded { connection, _ in try await connection.query(statement, logger: self.logger).get() }
            } catch {
                logger.debug("NOTIFY failed; other processes' polls will look within a second", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Holds one connection LISTENing on ``channel`` and wakes the long polls of the queue each
    /// notification names. After a reconnect every poll is woken (notifications sent meanwhile
    /// are lost); the polls also look at least once a second (``PostgresMessageQueue``).
    private func listen() async {
        while !Task.isCancelled {
            do {
                try await client.withConnection { connection in
                    try await connection.listen(on: channel) { notifications in
                        self.arrivals.notifyAll()
                        for try await notification in notifications {
                            if let id = Int64(notification.payload) { self.arrivals.notify(id) } else { self.arrivals.notifyAll() }
                        }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.debug("LISTEN connection lost; reconnecting", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
    }
}

/// A transaction's COMMIT was answered with another tag ("ROLLBACK": an error had aborted it).
struct TransactionRolledBack: Error, CustomStringConvertible {
    var tag: String
    var description: String { "COMMIT answered \(tag): the transaction was rolled back" }
}

/// The first of several answers to one call (the work's, or its deadline's); later ones are dropped.
final class FirstAnswer<T: Sendable>: Sendable {
    private struct State {
        var result: Result<T, any Error>?
        var waiter: CheckedContinuation<T, any Error>?
    }

    private let state = Mutex(State())

    /// Gives the answer unless one was given; returns whether this one counts.
    @discardableResult
    func give(_ result: Result<T, any Error>) -> Bool {
        let (taken, waiter): (Bool, CheckedContinuation<T, any Error>?) = state.withLock { state in
            guard state.result == nil else { return (false, nil) }
            state.result = result
            defer { state.waiter = nil }
            return (true, state.waiter)
        }
        waiter?.resume(with: result)
        return taken
    }

    /// Waits for the answer.
    func value() async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let ready: Result<T, any Error>? = state.withLock { state in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}

/// One bounded call's progress: the connection it uses (for its deadline to close), when it got
/// it, whether its commit may have been sent, and whether its deadline passed. The work and the
/// deadline decide under one lock, so that "nothing was stored" is never said of a call whose
/// COMMIT goes out afterwards.
final class Call: Sendable {
    private struct State {
        var connection: PostgresConnection?
        var began: ContinuousClock.Instant?
        var abandoned = false
        var mayCommit = false
        var expired = false
        var closing = false
    }

    private let state = Mutex(State())

    /// Takes `connection` for the call, unless the call gave up waiting for one.
    func begin(on connection: PostgresConnection, at instant: ContinuousClock.Instant) -> Bool {
        state.withLock { state in
            guard !state.abandoned else { return false }
            state.connection = connection
            state.began = instant
            return true
        }
    }

    /// The work is done with its connection; returns whether the deadline is closing it (the
    /// work then closes it too before the pool takes it back).
    func end() -> Bool {
        state.withLock { state in
            state.connection = nil
            return state.closing
        }
    }

    /// When the call got its connection; if it has none yet, the call gives up waiting.
    func beganOrAbandon() -> ContinuousClock.Instant? {
        state.withLock { state in
            if state.began == nil { state.abandoned = true }
            return state.began
        }
    }

    /// For the deadline: the connection still in use, marked as being closed; nil when the work
    /// has already given it back (it may serve another call by now).
    func claimForClosing() -> PostgresConnection? {
        state.withLock { state in
            guard let connection = state.connection else { return nil }
            state.closing = true
            return connection
        }
    }

    /// From now on the call's writes may commit on the server: a lost connection leaves them
    /// unknown. False when the deadline has passed: the caller was told nothing was stored, so
    /// nothing may be sent that could commit.
    func mayCommit() -> Bool {
        state.withLock { state in
            guard !state.expired else { return false }
            state.mayCommit = true
            return true
        }
    }

    /// For the deadline: the call is over; what its caller is told.
    func expire(limit: Duration) -> any Error {
        let committing = state.withLock { state in
            state.expired = true
            return state.mayCommit
        }
        let expired = TimeoutError(limit: limit)
        return committing ? UnconfirmedCommit(underlying: expired) : expired
    }

    /// What to tell the caller of a call that failed with `error`. A server's answer (an error
    /// with a SQLSTATE) is definite: the statement, or the transaction, did not commit; so is a
    /// COMMIT answered ROLLBACK, and an error of this process (a row it could not decode). A
    /// lost connection after the commit may have been sent is unknown.
    func verdict(on error: any Error) -> any Error {
        guard state.withLock({ $0.mayCommit }), PostgresDatabase.sqlState(error) == nil else { return error }
        switch error {
        case is BackendUnavailable, is CancellationError, is TransactionRolledBack, is PostgresDecodingError, is UnconfirmedCommit:
            return error
        default:
            return UnconfirmedCommit(underlying: error)
        }
    }
}

/// A call's connection was lost (or its deadline passed) after its commit may have been sent:
/// its writes may or may not be stored. Told as ``BackendUnavailable`` with an unknown outcome.
struct UnconfirmedCommit: Error, CustomStringConvertible {
    var underlying: any Error
    var description: String { "PostgreSQL stopped answering after a commit may have been sent (\(underlying))" }
}

/// The queues and topics a process has opened, by name.
struct PostgresCatalog {
    var queues: [String: PostgresMessageQueue] = [:]
    var topics: [String: PostgresTopic] = [:]
}

extension PostgresRandomAccessRow {
    /// Column `index` decoded as `T`.
    func get<T: PostgresDecodable>(_ index: Int, as type: T.Type = T.self) throws -> T {
        try self[index].decode(T.self)
    }

    /// Column `name` decoded as `T`.
    func get<T: PostgresDecodable>(_ name: String, as type: T.Type = T.self) throws -> T {
        try self[name].decode(T.self)
    }
}
