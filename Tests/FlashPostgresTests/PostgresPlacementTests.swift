import FlashBackend
import FlashOrders
@testable import FlashPostgres
import FlashTestSupport
import Foundation
import Testing

/// What only the PostgreSQL store has to get right: a group written as one autocommitted
/// statement must not commit after its caller was told it failed.
@Suite("PostgreSQL placement")
struct PostgresPlacementTests {
    @Test(.enabled(if: TestPostgres.url != nil))
    func anOrderTheServerCannotStoreInTimeFailsAndIsNeverStoredLater() async throws {
        let configuration = try TestPostgres.freshSchema(prefix: "p_")
        let backend = try await PostgresBackend.started(configuration: .init(database: configuration))
        _ = try await backend.catalog.putProduct(id: "TV", stock: 10, perCustomerLimit: nil, price: 300)

        // The process under test: the same schema, each call limited to `limitSeconds`. Any limit
        // shows the rule (the lock below is held until the test lets it go, not for a set time);
        // 5 s leaves this process's own set-up calls (its queues, the warm-up order) a generous
        // allowance on a loaded box.
        let limitSeconds = 5
        var hurried = configuration
        hurried.operationTimeout = .seconds(limitSeconds)
        let placer = try await PostgresBackend.started(configuration: .init(database: hurried))
        // The placer now knows TV: its next order goes in one statement.
        _ = try await placer.orders.placeQueued(newOrder("a", [("TV", 1, nil)]))

        // Another session holds TV's row until the test lets it go.
        let lock = try await Self.lockRow("TV", in: backend)
        defer { lock.released.finish() }

        let late = newOrder("b", [("TV", 1, nil)])
        await #expect(throws: BackendUnavailable.self) {
            try await placer.orders.placeQueued(late)
        }
        // The caller was told the order failed. The server gives its statement up within the
        // call's limit of the statement's start (at 80% of it): wait for that, by the server's
        // clock, before letting the lock go, so that a statement that reached the server late on
        // a loaded box is not mistaken for one that outlives its call.
        try await Self.untilNoSessionWaits(on: lock.holder, longerThan: limitSeconds, in: backend.database)
        try await lock.letGo()

        // The lock is gone: the statement that waited on it must not have gone on to commit.
        // (A lower bound: a surviving statement would commit moments after the release.)
        try await Task.sleep(for: .milliseconds(600))
        #expect(try await backend.orders.order(id: late.id) == nil)
        #expect(try await backend.catalog.product(id: "TV")?.stock == 9)
        #expect(try await backend.payments.statistics().total == 1)
        try await placer.shutdown()
        try await backend.database.dropSchema()
        try await backend.shutdown()
    }

    /// A call that waited for a pooled connection most of its limit must still be given up by
    /// the server before its caller hears 503 "nothing was stored": the call's deadline counts
    /// from when it got its connection, and the server cancels the statement first.
    @Test(.enabled(if: TestPostgres.url != nil))
    func anOrderThatWaitedForAConnectionIsNeverStoredAfterItsCallerWasToldNothingWas() async throws {
        let configuration = try TestPostgres.freshSchema(prefix: "p_")
        let backend = try await PostgresBackend.started(configuration: .init(database: configuration))
        _ = try await backend.catalog.putProduct(id: "TV", stock: 10, perCustomerLimit: nil, price: 300)

        // The process under test: two connections, one of them its LISTEN session.
        let limitSeconds = 4
        var hurried = configuration
        hurried.operationTimeout = .seconds(limitSeconds)
        hurried.maxConnections = 2
        let placer = try await PostgresBackend.started(configuration: .init(database: hurried))
        _ = try await placer.orders.placeQueued(newOrder("a", [("TV", 1, nil)]))
        let channel = "flashsale_" + (configuration.schema ?? "")
        // Both processes' LISTEN sessions are up (so the placer's pool has one connection left).
        let listening = "LISTEN \"\(channel)\"%"
        let patience = ContinuousClock.now + .seconds(60)
        while try await backend.database.read("SELECT 1 FROM pg_stat_activity WHERE query LIKE \(listening)").count < 2 {
            guard ContinuousClock.now < patience else { throw CancellationError() }
            try await Task.sleep(for: .milliseconds(20))
        }

        // The placer's other connection is busy until the test lets it go.
        let (poolHeld, poolTaken) = AsyncStream.makeStream(of: Void.self)
        let (poolReleased, releasePool) = AsyncStream.makeStream(of: Void.self)
        defer { releasePool.finish() }
        let occupying = Task {
            try await placer.database.transaction(timeout: .seconds(120)) { _ in
                poolTaken.yield()
                for await _ in poolReleased {}
            }
        }
        for await _ in poolHeld { break }

        // Another session holds TV's row until the test lets it go.
        let lock = try await Self.lockRow("TV", in: backend)
        defer { lock.released.finish() }

        // The order waits for a connection most of the time it may (half its limit), then for
        // TV's row.
        let late = newOrder("b", [("TV", 1, nil)])
        let placing = Task { try await placer.orders.placeQueued(late) }
        try await Task.sleep(for: .seconds(limitSeconds) * 0.35)
        releasePool.finish()
        try await occupying.value
        do {
            _ = try await placing.value
            Issue.record("the order was placed while its product's row was locked")
        } catch let error as BackendUnavailable {
            #expect(error.outcome == .notApplied, "told: \(error)")
        }
        // Told that nothing was stored: the row is let go at once, and nothing must commit then.
        try await lock.letGo()
        try await Task.sleep(for: .milliseconds(600))
        #expect(try await backend.orders.order(id: late.id) == nil)
        #expect(try await backend.catalog.product(id: "TV")?.stock == 9)
        try await placer.shutdown()
        try await backend.database.dropSchema()
        try await backend.shutdown()
    }

    /// Processes that start together on a fresh database (what an orchestrator does) all open it:
    /// none fails because another one was creating the same topic at the same moment.
    @Test(.enabled(if: TestPostgres.url != nil))
    func processesStartingTogetherOnAFreshDatabaseAllOpenIt() async throws {
        var configuration = try TestPostgres.freshSchema(prefix: "p_")
        configuration.maxConnections = 2
        let fresh = configuration
        let opened = await withThrowingTaskGroup(of: PostgresBackend.self) { group in
            for _ in 0..<6 { group.addTask { try await PostgresBackend.started(configuration: .init(database: fresh)) } }
            var opened: [PostgresBackend] = []
            while let result = await group.nextResult() {
                switch result {
                case let .success(backend): opened.append(backend)
                case let .failure(error): Issue.record("a process failed to open the database: \(error)")
                }
            }
            return opened
        }
        #expect(opened.count == 6)
        let first = try #require(opened.first)
        // The migrations' lock staggers whole starts; the step that raced is creating a topic
        // that does not exist yet, so that is repeated here, by every process at once.
        for round in 0..<20 {
            let ids = await withThrowingTaskGroup(of: Int64.self) { group in
                for backend in opened { group.addTask { try await backend.database.createTopic("t\(round)").id } }
                var ids: Set<Int64> = []
                while let result = await group.nextResult() {
                    switch result {
                    case let .success(id): ids.insert(id)
                    case let .failure(error): Issue.record("a process failed to create topic t\(round): \(error)")
                    }
                }
                return ids
            }
            #expect(ids.count == 1)
        }
        try await first.database.dropSchema()
        for backend in opened { try await backend.shutdown() }
    }

    /// One slow read that the server gives up (`statement_timeout`) fails alone: the next
    /// placement of the same process is not turned away as if the database were unreachable.
    @Test(.enabled(if: TestPostgres.url != nil))
    func aSlowReadDoesNotTurnAwayTheNextOrder() async throws {
        let configuration = try TestPostgres.freshSchema(prefix: "p_")
        let backend = try await PostgresBackend.started(configuration: .init(database: configuration))
        _ = try await backend.catalog.putProduct(id: "TV", stock: 10, perCustomerLimit: nil, price: 300)
        // The process under test; one of its calls is given 2 s (the server gives its statement
        // up at 1.6 s) and would take 5. Its other calls keep the generous limit: a loaded box
        // must not fail them by one.
        let process = try await PostgresBackend.started(configuration: .init(database: configuration))
        await #expect(throws: BackendUnavailable.self) {
            try await process.database.transaction(timeout: .seconds(2)) { connection in
                try await connection.query("SELECT pg_sleep(5)", logger: process.database.logger).get()
            }
        }
        let placement = try await process.orders.placeQueued(newOrder("a", [("TV", 1, nil)]))
        #expect(placement.created)
        try await process.shutdown()
        try await backend.database.dropSchema()
        try await backend.shutdown()
    }

    /// A statement outside BEGIN … COMMIT commits at the protocol's Sync, after the server has
    /// already answered CommandComplete. Here a deferred constraint trigger refuses the commit
    /// (as a server shutting down at that moment does, which lost orders answered 202 across a
    /// PostgreSQL restart): the caller must hear "unavailable", never success.
    @Test(.enabled(if: TestPostgres.url != nil))
    func aStatementWhoseCommitFailsIsNeverReportedAsDone() async throws {
        let configuration = try TestPostgres.freshSchema(prefix: "p_")
        let backend = try await PostgresBackend.started(configuration: .init(database: configuration))
        let database = backend.database
        try await database.query("""
            CREATE FUNCTION refuse_doomed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF NEW.customer_id = 'doomed' THEN RAISE EXCEPTION 'refused at commit'; END IF; RETURN NULL; END $$
            """)
        try await database.query("""
            CREATE CONSTRAINT TRIGGER refuse_doomed AFTER INSERT ON fs_orders DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION refuse_doomed()
            """)
        _ = try await backend.catalog.putProduct(id: "TV", stock: 10, perCustomerLimit: nil, price: 300)
        // The first order makes TV known: the next group is written in one autocommitted statement.
        let first = newOrder("a", [("TV", 1, nil)])
        _ = try await backend.orders.placeQueued(first)

        let doomed = newOrder("doomed", [("TV", 1, nil)])
        await #expect(throws: BackendUnavailable.self) {
            try await backend.orders.placeQueued(doomed)
        }
        // Calls fail at once for a moment after the database was found unavailable.
        try await Task.sleep(for: .milliseconds(600))
        #expect(try await backend.orders.order(id: doomed.id) == nil)
        #expect(try await backend.orders.order(id: first.id) != nil)
        #expect(try await backend.catalog.product(id: "TV")?.stock == 9)

        // Any write outside a transaction: a refused commit is not a success.
        try await database.query("CREATE TABLE doomed_rows (customer_id text)")
        try await database.query("""
            CREATE CONSTRAINT TRIGGER refuse_doomed AFTER INSERT ON doomed_rows DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION refuse_doomed()
            """)
        await #expect(throws: BackendUnavailable.self) {
            try await database.query("INSERT INTO doomed_rows VALUES ('doomed')")
        }
        try await Task.sleep(for: .milliseconds(600))
        #expect(try await database.read("SELECT 1 FROM doomed_rows").isEmpty)
        try await database.dropSchema()
        try await backend.shutdown()
    }

    /// A product row held locked by a session of its own until the test lets it go.
    struct RowLock {
        /// The server process holding the lock.
        let holder: Int
        /// Finishing it ends the holding transaction.
        let released: AsyncStream<Void>.Continuation
        let holding: Task<Void, any Error>

        /// Ends the transaction, and the lock with it.
        func letGo() async throws {
            released.finish()
            try await holding.value
        }
    }

    /// Locks `product`'s row in a transaction of `backend` that lasts until the test lets it go.
    static func lockRow(_ product: String, in backend: PostgresBackend) async throws -> RowLock {
        let (locked, lockTaken) = AsyncStream.makeStream(of: Int.self)
        let (released, release) = AsyncStream.makeStream(of: Void.self)
        let holding = Task {
            defer { lockTaken.finish() }
            // Far longer than the test needs: it ends the transaction itself.
            try await backend.database.transaction(timeout: .seconds(120)) { connection in
                for try await pid in try await connection.query(
                    "SELECT pg_backend_pid() FROM fs_products WHERE product_id = \(product) FOR UPDATE", logger: backend.database.logger
                ).decode(Int.self) {
                    lockTaken.yield(pid)
                }
                for await _ in released {}
            }
        }
        for await pid in locked { return RowLock(holder: pid, released: release, holding: holding) }
        release.finish()
        try await holding.value
        throw CancellationError()
    }

    /// Returns once no session waits on a lock of server process `holder`. A session that has
    /// waited `seconds` or longer since its statement began (by the server's clock) is one the
    /// server did not give up in time: recorded as an issue, and this returns then, so that the
    /// release shows what that statement goes on to do.
    static func untilNoSessionWaits(on holder: Int, longerThan seconds: Int, in database: PostgresDatabase) async throws {
        while true {
            let waiting = try await database.query("""
                SELECT pid FROM pg_stat_activity WHERE \(holder)::integer = ANY(pg_blocking_pids(pid))
                """)
            if waiting.isEmpty { return }
            let overdue = try await database.query("""
                SELECT pid FROM pg_stat_activity
                WHERE \(holder)::integer = ANY(pg_blocking_pids(pid)) AND now() - query_start >= \(Double(seconds)) * interval '1 second'
                """)
            if !overdue.isEmpty {
                Issue.record("a statement waited on the lock \(seconds) s or longer: the server did not give it up within its call's limit")
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
