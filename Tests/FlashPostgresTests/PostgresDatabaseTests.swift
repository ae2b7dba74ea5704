import FlashBackend
@testable import FlashPostgres
import FlashQueue
import FlashTestSupport
import Logging
import Synchronization
import ServiceLifecycle
import Testing

/// The database's life as a Service: made without I/O, run in a service group, opened once
/// running, and closed with the group.
@Suite("PostgreSQL database life cycle")
struct PostgresDatabaseTests {
    static var logger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    /// The LISTEN sessions on `database`'s channel, as the server lists them.
    static func listeners(of database: PostgresDatabase, seenBy observer: PostgresDatabase) async throws -> Int {
        let listening = "LISTEN \"\(database.channel)\"%"
        return try await observer.read("SELECT 1 FROM pg_stat_activity WHERE query LIKE \(listening)").count
    }

    /// Polls `condition` until it holds or a generous allowance passes; returns whether it held.
    static func eventually(_ condition: () async throws -> Bool) async throws -> Bool {
        let patience = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < patience {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return try await condition()
    }

    /// Opened inside a service group it works (a queue created, a message sent and received,
    /// its LISTEN session up); a graceful shutdown of the group ends its run, its LISTEN
    /// session and its pool: later calls are refused as "unavailable", never left waiting.
    @Test(.enabled(if: TestPostgres.url != nil))
    func aDatabaseRunsInItsServiceGroupAndClosesWithIt() async throws {
        let configuration = try TestPostgres.freshSchema()
        // On a schema of its own: its LISTEN session is on another channel.
        let observer = try await PostgresDatabase.started(configuration: try TestPostgres.freshSchema())
        let database = PostgresDatabase(configuration: configuration, logger: Self.logger)
        let user = UserOf(database: database, observer: observer)
        let group = ServiceGroup(configuration: .init(services: [
            .init(service: database),
            .init(service: user, successTerminationBehavior: .gracefullyShutdownGroup),
        ], logger: Self.logger))
        try await group.run()
        #expect(user.received.withLock { $0 } == ["hello"])
        #expect(user.listened.withLock { $0 })

        // The group has ended, and the database with it.
        #expect(try await Self.eventually { try await Self.listeners(of: database, seenBy: observer) == 0 })
        await #expect(throws: BackendUnavailable.self) {
            try await database.read("SELECT 1")
        }
        let cleanup = PostgresDatabase(configuration: configuration, logger: Self.logger)
        try await cleanup.withRunning { try await cleanup.dropSchema() }
        try await observer.dropSchema()
        await observer.shutdown()
    }

    /// A database that never ran shuts down at once (its event loops stopped), as often as asked,
    /// and a run after that does nothing.
    @Test func aDatabaseThatNeverRanShutsDownAtOnce() async throws {
        let database = PostgresDatabase(configuration: try PostgresDatabase.Configuration(url: "postgres://nobody@127.0.0.1:1/none"),
                                        logger: Self.logger)
        await database.shutdown()
        await database.shutdown()
        await database.run()
    }
}

/// A process's use of the database inside its service group: open it, use a queue, see its
/// LISTEN session, then return (the group then shuts down).
private final class UserOf: Service, Sendable {
    let database: PostgresDatabase
    let observer: PostgresDatabase
    let received = Mutex<[String]>([])
    let listened = Mutex(false)

    init(database: PostgresDatabase, observer: PostgresDatabase) {
        self.database = database
        self.observer = observer
    }

    func run() async throws {
        try await database.open()
        let queue = try await database.createQueue("life")
        _ = try await queue.send("hello")
        let messages = try await queue.receive(maxMessages: 10, wait: .seconds(5), visibilityTimeout: .seconds(30))
        received.withLock { $0 = messages.map(\.body) }
        let listening = try await PostgresDatabaseTests.eventually {
            try await PostgresDatabaseTests.listeners(of: database, seenBy: observer) == 1
        }
        listened.withLock { $0 = listening }
    }
}
