import FlashQueue
import FlashSQLite
import Testing
import FlashTestSupport

/// A receive that runs a step in its own transaction (what a claim does): both commit, or
/// neither.
@Suite("SQLite receive with a step")
struct SQLiteReceiveStepTests {
    struct Refused: Error {}

    @Test func aStepThatThrowsLeasesNothing() async throws {
        let database = try SQLiteDatabase(path: TemporaryFile.path("step"))
        let queue = try await database.createQueue("q")
        _ = try await queue.send("m")
        await #expect(throws: Refused.self) {
            _ = try await queue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(30)) { _, _ in throw Refused() }
        }
        // Not leased, not counted: the next receive is the message's first.
        #expect(try await queue.statistics().inFlight == 0)
        let claimed = try await queue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(30)) { _, messages in messages.count }
        #expect(claimed?.result == 1)
        #expect(claimed?.messages.first?.receiveCount == 1)
        #expect(try await queue.statistics().inFlight == 1)
        // Nothing visible: no step runs, and the answer is nil.
        #expect(try await queue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(30)) { _, _ in Issue.record("a step ran on nothing") } == nil)
        try database.close()
    }
}
