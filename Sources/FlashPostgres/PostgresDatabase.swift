import FlashBackend
import FlashCore
import FlashQueue
import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// One PostgreSQL database (or one schema in it) as flashsale uses it: a connection pool
/// (postgres-nio's `PostgresClient`), the queues and topics opened so far, and the LISTEN
/// connection that wakes this process's long polls when any process sends.
///
/// A Service, as `PostgresClient` is, and built the way it is:
/// - ``init(configuration:logger:)`` does no I/O and starts nothing;
/// - ``run()`` runs the pool, the LISTEN session and the NOTIFY sender as child tasks until
///   graceful shutdown (or cancellation, or ``shutdown()``), then closes every connection and
///   stops the event loops it made. Put it first in a service group, so that it stops last;
/// - ``open()``, once ``run()`` has started, checks the server answers and applies the
///   schema's migrations: a start-up step the composition root takes before its HTTP server
///   starts (see `FlashSystem.run`).
///
/// The files of this module hold one concern each: `PostgresConfiguration` (the URL),
/// `PostgresStatements` (transactions, statements, retries), `BoundedCall` (each call's
/// deadline and what its caller is told), `PostgresErrors` (what an error means), and
/// `PostgresNotifications` (LISTEN/NOTIFY).
///
/// Every call goes through ``transaction(timeout:_:)`` or ``query(_:)``, which bound the wait
/// for a connection and turn a lost server into ``BackendUnavailable`` (the API's 503), and
/// retry deadlocks and serialization failures. The pool reconnects by itself.
public final class PostgresDatabase: Service, Sendable {
    public let configuration: Configuration
    /// Where this database's stores read "now" (``Configuration/time``).
    public var time: TimeSource { configuration.time }
    let client: PostgresClient
    let logger: Logger
    /// The connections' event loops, made by this database and stopped at the end of its
    /// ``run()``. Not the HTTP server's: a transaction's statements then never wait behind
    /// request I/O (see ``EventLoopTaskExecutor``, where the difference was measured).
    private let loops: MultiThreadedEventLoopGroup
    let loopExecutors: LoopExecutors
    /// The server parameters every connection starts with (statement timeout, search path).
    private let startupOptions: String
    /// Bumped per queue when a message may have become visible: by this process's own commits at
    /// once, by other processes' through NOTIFY.
    let arrivals = ArrivalSignal<Int64>()
    /// The NOTIFY channel of this database (and schema).
    let channel: String
    let catalog = Mutex(PostgresCatalog())
    /// Until when (Unix ms) calls fail at once: set when the server was just found unreachable,
    /// so that during an outage requests get their 503 now rather than after the timeout. A call
    /// after that instant probes the server again.
    let unreachableUntil = Atomic<Int64>(0)
    /// The calls running (see `bounded`: each one's work and deadline), by number: ``run()``
    /// waits for them before it stops the event loops they run on.
    let inFlight = Mutex<[UInt64: Task<Void, Never>]>([:])
    let workIDs = Atomic<UInt64>(0)
    /// Queues touched since the last NOTIFY.
    let unannounced = Mutex<Set<Int64>>([])
    /// Wakes the NOTIFY sender (see `sendNotifications`).
    let announcements = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    /// Finished once ``open()`` has succeeded: the LISTEN session waits for it, so that a
    /// database not reachable yet is tried by the start-up's checks alone.
    let opened = AsyncStream.makeStream(of: Void.self)
    /// Ends ``run()`` (``shutdown()``).
    private let stopRequest = AsyncStream.makeStream(of: Void.self)
    private let life = Mutex(Life())

    /// Where the database is in its life, and who waits for its end.
    private struct Life {
        enum Stage { case made, running, ended }
        var stage = Stage.made
        var started: [CheckedContinuation<Void, Never>] = []
        /// Callers of ``shutdown()`` waiting for ``run()`` to end (told "it ran").
        var ended: [CheckedContinuation<Bool, Never>] = []
    }

    /// Makes the pool and its event loops; connects to nothing until ``run()``.
    public init(configuration: Configuration, logger: Logger = Logger(label: "flashsale.postgres")) {
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
        self.startupOptions = options
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        self.loops = loops
        self.loopExecutors = LoopExecutors(loops)
        self.client = PostgresClient(configuration: config, eventLoopGroup: loops, backgroundLogger: logger)
        self.channel = "flashsale_" + (configuration.schema ?? "public")
    }

    /// Runs the pool, the LISTEN session and the NOTIFY sender until graceful shutdown,
    /// cancellation or ``shutdown()``. Then the connections close (calls still in flight fail
    /// at once, and are waited for) and the event loops stop. Runs once.
    public func run() async {
        let waiters: [CheckedContinuation<Void, Never>]? = life.withLock { life in
            guard life.stage == .made else { return nil }
            life.stage = .running
            defer { life.started = [] }
            return life.started
        }
        guard let waiters else { return }
        for waiter in waiters { waiter.resume() }
        await withDiscardingTaskGroup { group in
            group.addTask { await self.client.run() }
            group.addTask { await self.listen() }
            group.addTask { await self.sendNotifications() }
            await withGracefulShutdownHandler {
                for await _ in stopRequest.stream {}
            } onGracefulShutdown: {
                self.stopRequest.continuation.finish()
            }
            group.cancelAll()
        }
        // The pool has closed its connections, so calls still running fail at once; they end
        // (on the loops) before the loops stop.
        let calls = inFlight.withLock { Array($0.values) }
        for call in calls { await call.value }
        try? await loops.shutdownGracefully()
        let ended = life.withLock { life in
            life.stage = .ended
            defer { life.ended = [] }
            return life.ended
        }
        for waiter in ended { waiter.resume(returning: false) }
    }

    /// Checks that the server answers and lets this process in, then applies the schema's
    /// migrations (under an advisory lock, so processes starting together apply each once).
    /// Waits for ``run()`` to start. Throws ``StartupError``.
    public func open() async throws {
        await untilRunning()
        do {
            try await connectOnce()
            try await PostgresSchema.migrate(self)
            opened.continuation.finish()
        } catch {
            // A start-up given up (a shutdown while it waited) is not the database's failure.
            if Task.isCancelled { throw CancellationError() }
            throw StartupError(url: configuration.redacted, underlying: error)
        }
    }

    /// Ends ``run()`` and returns when it has ended (at once if it never started: the event
    /// loops are stopped here then); idempotent.
    public func shutdown() async {
        stopRequest.continuation.finish()
        let neverRan: Bool = await withCheckedContinuation { continuation in
            let now: Bool? = life.withLock { life in
                switch life.stage {
                case .made:
                    life.stage = .ended
                    return true
                case .running:
                    life.ended.append(continuation)
                    return nil
                case .ended:
                    return false
                }
            }
            if let now { continuation.resume(returning: now) }
        }
        if neverRan {
            let waiters = life.withLock { life in defer { life.started = [] }; return life.started }
            for waiter in waiters { waiter.resume() }
            try? await loops.shutdownGracefully()
        }
    }

    /// Runs this database for the length of `body`, opened first (``open()``) and shut down
    /// after: for tools that run no service group (a benchmark's set-up, a clean-up), as
    /// postgres-nio's own examples run a client in a task group beside the work.
    public func withRunning<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await self.run() }
            do {
                try await open()
                let result = try await body()
                await shutdown()
                return result
            } catch {
                await shutdown()
                throw error
            }
        }
    }

    /// Returns once ``run()`` has started (or the database has ended).
    private func untilRunning() async {
        await withCheckedContinuation { continuation in
            let ready = life.withLock { life in
                guard life.stage == .made else { return true }
                life.started.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// One connection of its own, opened and closed before the pool's first: it fails within
    /// the connect timeout and with the server's reason (no such database, a wrong password),
    /// where the pool would retry a failing connection until the call's deadline and report
    /// only "no answer".
    private func connectOnce() async throws {
        let tls: PostgresConnection.Configuration.TLS = switch configuration.sslMode {
        case "disable": .disable
        case "require": .require(try .init(configuration: .makeClientConfiguration()))
        default: .prefer(try .init(configuration: .makeClientConfiguration()))
        }
        var config = PostgresConnection.Configuration(host: configuration.host, port: configuration.port, username: configuration.username,
                                                      password: configuration.password, database: configuration.database, tls: tls)
        config.options.connectTimeout = .seconds(2)
        config.options.additionalStartupParameters = [("options", startupOptions)]
        let connection = try await PostgresConnection.connect(on: loops.next(), configuration: config, id: 0, logger: logger)
        try? await connection.close()
    }

    /// Drops this configuration's schema and everything in it (benchmarks and tests that made a
    /// throwaway one). Refuses when no schema was named: the default schema is never dropped.
    public func dropSchema() async throws {
        guard let schema = configuration.schema else { return }
        // The name was checked to be letters, digits and underscores; identifiers cannot be bound.
        try await query("DROP SCHEMA IF EXISTS \(unescaped: "\"" + schema + "\"") CASCADE")
    }
}
