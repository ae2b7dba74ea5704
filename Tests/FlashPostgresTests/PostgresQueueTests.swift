@testable import FlashPostgres
import FlashTestSupport
import FlashQueue
import Testing

/// What only the PostgreSQL queue has to get right.
@Suite("PostgreSQL queue")
struct PostgresQueueTests {
    /// A purge works at any size: a backlog that one DELETE could not remove within the
    /// statement timeout is removed in batches.
    @Test(.enabled(if: TestPostgres.url != nil))
    func aPurgeOfABacklogFarLargerThanOneStatementCanDeleteEmptiesTheQueue() async throws {
        let configuration = try TestPostgres.freshSchema()
        let setup = try await PostgresDatabase.started(configuration: configuration)
        let queue = try await setup.createQueue("big")
        let backlog = 400_000
        try await setup.query("""
            INSERT INTO fs_messages (queue_id, message_id, body, sent_at, visible_at)
            SELECT \(queue.record.id), 'm' || n, 'body ' || n, 0, 0 FROM generate_series(1, \(backlog)) AS n
            """)
        #expect(try await queue.statistics().visible == backlog)

        // A process whose statements are given up after 1.6 s: less than one DELETE of 400,000
        // messages needs (seconds), far more than a batch does (milliseconds), even on a loaded
        // machine.
        var hurried = configuration
        hurried.operationTimeout = .seconds(2)
        let purger = try await PostgresDatabase.started(configuration: hurried)
        try await purger.queue(named: "big").purge()
        #expect(try await queue.statistics().visible == 0)

        // The queue goes on as before.
        _ = try await queue.send("after")
        #expect(try await queue.statistics().visible == 1)
        await purger.shutdown()
        try await setup.dropSchema()
        await setup.shutdown()
    }
}
