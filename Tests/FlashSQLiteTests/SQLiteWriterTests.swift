import FlashBackend
import Dispatch
import FlashCore
import FlashFaults
import FlashQueue
@testable import FlashSQLite
import Foundation
import GRDB
import Synchronization
import Testing
import FlashTestSupport

/// Regression tests of the embedded backend's writer and queue storage (issue: final states).
@Suite("SQLite writer and queue storage")
struct SQLiteWriterTests {
    /// Holds GRDB's writer queue until released, so that operations queued meanwhile form one group.
    final class WriterGate: @unchecked Sendable {
        let semaphore = DispatchSemaphore(value: 0)
        let holding = Atomic<Bool>(false)

        /// Starts holding the writer; returns once it does.
        func hold(_ database: SQLiteDatabase) async throws -> Task<Void, Error> {
            let task = Task { try await database.write { _ in
                self.holding.store(true, ordering: .sequentiallyConsistent)
                self.semaphore.wait()
            } }
            try await SQLiteWriterTests.until { self.holding.load(ordering: .sequentiallyConsistent) }
            return task
        }

        func release() { semaphore.signal() }
    }

    struct Stuck: Error {}

    /// Polls `condition` every 2 ms; throws after 60 s rather than hang.
    static func until(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw Stuck() }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    struct Rollback: Error {}

    /// Waits until `count` operations wait for the writer's next group.
    static func waitForQueue(_ database: SQLiteDatabase, count: Int) async throws {
        try await until { database.connection.writer.waitingOperations >= count }
    }

    @Test func aTransactionRolledBackUnderAGroupFailsOnlyWhatItUndidAndCommitsTheRest() async throws {
        let database = try SQLiteDatabase(path: TemporaryFile.path("writer"))
        try await database.write { db in try db.execute(sql: "CREATE TABLE t (name TEXT)") }
        let gate = WriterGate()
        let holder = try await gate.hold(database)
        let before = Task { try await database.write { db in try db.execute(sql: "INSERT INTO t VALUES ('before')") } }
        try await Self.waitForQueue(database, count: 1)
        // As SQLite does on disk full or an I/O error: the whole transaction is rolled back.
        let culprit = Task { try await database.write { db in
            try db.execute(sql: "INSERT INTO t VALUES ('culprit')")
            try db.execute(sql: "ROLLBACK")
            throw Rollback()
        } }
        try await Self.waitForQueue(database, count: 2)
        let after = Task { try await database.write { db in try db.execute(sql: "INSERT INTO t VALUES ('after')") } }
        try await Self.waitForQueue(database, count: 3)
        gate.release()
        try await holder.value
        // The operation that ran in the lost transaction is told so; the one after it committed
        // in a transaction of its own and is not reported failed.
        await #expect(throws: (any Error).self) { try await before.value }
        await #expect(throws: (any Error).self) { try await culprit.value }
        try await after.value
        let names = try await database.read { db in try String.fetchAll(db, sql: "SELECT name FROM t ORDER BY name") }
        #expect(names == ["after"])
        // The writer goes on as usual.
        try await database.write { db in try db.execute(sql: "INSERT INTO t VALUES ('later')") }
        #expect(try await database.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t") } == 2)
        try database.close()
    }

    @Test func theRetentionSweepReadsOnlyTheExpiredEdgeOfABacklog() async throws {
        let database = try SQLiteDatabase(path: TemporaryFile.path("sweep"))
        let queue = try await database.createQueue("backlog", attributes: QueueAttributes(retention: .seconds(3600)))
        let now = WallClock.nowMillis()
        try await database.write { db in
            for n in 0..<1_000 {
                try SQLiteQueueStorage.insert(db, into: queue.record, messageID: "old-\(n)", body: "x", now: now - 7_200_000, delayMillis: 0)
            }
            for n in 0..<50_000 {
                try SQLiteQueueStorage.insert(db, into: queue.record, messageID: "new-\(n)", body: "x", now: now, delayMillis: 0)
            }
        }
        let first = try await database.write { db in try SQLiteQueueStorage.dropExpired(db, queue: queue.record, now: now) }
        #expect(first.dropped == 1_000)
        #expect(first.examined == 1_001)
        // Nothing expired: one row read, whatever the backlog behind it.
        let second = try await database.write { db in try SQLiteQueueStorage.dropExpired(db, queue: queue.record, now: now) }
        #expect(second == SQLiteQueueStorage.SweepOutcome(dropped: 0, examined: 1))
        let stats = try await queue.statistics()
        #expect(stats.total == 50_000)
        #expect(stats.expired == 1_000)
        try database.close()
    }

    @Test func aLeaseStartsWhenItsReceiveRunsNotWhenItJoinedTheWritersLine() async throws {
        // Time moves only when the test says: the checks below are exact, however slow the box.
        let time = ManualTime()
        let database = try SQLiteDatabase(path: TemporaryFile.path("lease"), time: time.source)
        let queue = try await database.createQueue("work")
        _ = try await queue.send("job")
        let gate = WriterGate()
        let holder = try await gate.hold(database)
        let receive = Task { try await queue.receive(maxMessages: 1, wait: .zero, visibilityTimeout: .milliseconds(600)) }
        try await Self.waitForQueue(database, count: 1)
        // The receive waits 400 ms behind a long write.
        time.advance(by: .milliseconds(400))
        let releasedAt = time.nowMillis
        gate.release()
        try await holder.value
        let received = try await receive.value
        #expect(received.count == 1)
        let visibleAt = try await database.read { db in
            try Int64.fetchOne(db, sql: "SELECT visible_at FROM \(queue.record.table)")
        }
        // The receive ran after the release, so its whole 600 ms lease counts from then: had it
        // begun in the line, it would end 200 ms after the release.
        #expect(try #require(visibleAt) - releasedAt == 600)
        try database.close()
    }

    @Test func aWriteThatCannotTakeTheFileLockByItsDeadlineIsRefusedUnstoredAndOneWithoutADeadlineWaits() async throws {
        let path = TemporaryFile.path("writer-lock")
        let database = try SQLiteDatabase(path: path)
        try await database.write { db in try db.execute(sql: "CREATE TABLE t (name TEXT)") }
        // Another connection (as another process would) holds the file's write lock.
        let other = try await SQLiteLockHolder(path: path)
        let started = ContinuousClock.now
        let patient = Task { try await database.write { db in try db.execute(sql: "INSERT INTO t VALUES ('patient')") } }
        await #expect(throws: Overloaded.self) {
            try await database.write(deadline: .now + .milliseconds(300)) { db in try db.execute(sql: "INSERT INTO t VALUES ('late')") }
        }
        let refusedAfter = ContinuousClock.now - started
        #expect(refusedAfter >= .milliseconds(300))
        // A write queued behind the stuck group, its deadline passed before the group's turn.
        await #expect(throws: Overloaded.self) {
            try await database.write(deadline: .now + .milliseconds(100)) { db in try db.execute(sql: "INSERT INTO t VALUES ('later')") }
        }
        try await Task.sleep(for: .milliseconds(200))
        other.release()
        try await patient.value
        // Once the lock is free, a write with a deadline goes through.
        try await database.write(deadline: .now + .seconds(30)) { db in try db.execute(sql: "INSERT INTO t VALUES ('after')") }
        let names = try await database.read { db in try String.fetchAll(db, sql: "SELECT name FROM t ORDER BY rowid") }
        #expect(names == ["patient", "after"])
        try database.close()
    }

    @Test func aWriterThatHasCommittedNothingForAPlacementsPatienceRefusesItOnArrival() async throws {
        let path = TemporaryFile.path("writer-stall")
        let database = try SQLiteDatabase(path: path)
        try await database.write { db in try db.execute(sql: "CREATE TABLE t (name TEXT)") }
        let line = database.connection.writer.line
        let other = try await SQLiteLockHolder(path: path)
        // A write without a deadline waits for the lock: the writer commits nothing meanwhile.
        let patient = Task { try await database.write { db in try db.execute(sql: "INSERT INTO t VALUES ('patient')") } }
        try await Self.until { line.status(patience: .milliseconds(100)).stalled }
        do {
            try await database.write(deadline: .now + .milliseconds(100)) { db in try db.execute(sql: "INSERT INTO t VALUES ('refused')") }
            Issue.record("a placement the stalled writer could not begin in time was let in")
        } catch let error as Overloaded {
            #expect(error.refusal == .forecast)
            #expect(error.waited == .zero)
        }
        other.release()
        try await patient.value
        #expect(!line.status(patience: .milliseconds(100)).stalled)
        try await database.write(deadline: .now + .seconds(30)) { db in try db.execute(sql: "INSERT INTO t VALUES ('after')") }
        let names = try await database.read { db in try String.fetchAll(db, sql: "SELECT name FROM t ORDER BY rowid") }
        #expect(names == ["patient", "after"])
        try database.close()
    }

    @Test func aGroupTakesAtMostMaxGroupOperations() async throws {
        let database = try SQLiteDatabase(path: TemporaryFile.path("writer-cap"))
        try await database.write { db in try db.execute(sql: "CREATE TABLE t (n INTEGER)") }
        let gate = WriterGate()
        let held = try await gate.hold(database)
        let count = GroupCommitWriter.maxGroup * 2 + 1
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for n in 0..<count {
                tasks.addTask { try await database.write { db in try db.execute(sql: "INSERT INTO t VALUES (?)", arguments: [n]) } }
            }
            try await Self.waitForQueue(database, count: count)
            let before = database.writerStatistics.commits
            gate.release()
            try await held.value
            try await tasks.waitForAll()
            let statistics = database.writerStatistics
            #expect(statistics.largestGroup == GroupCommitWriter.maxGroup)
            #expect(statistics.commits - before >= 3)
        }
        #expect(try await database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM t") } == count)
        try database.close()
    }

    @Test func aWriteWaitingBeyondTheNextGroupIsRefusedAtItsDeadlineWhileTheLockIsHeld() async throws {
        let path = TemporaryFile.path("writer-behind")
        let database = try SQLiteDatabase(path: path)
        try await database.write { db in try db.execute(sql: "CREATE TABLE t (n INTEGER)") }
        let other = try await SQLiteLockHolder(path: path)
        // More patient writes than one group takes, then one with a short deadline behind them.
        let count = GroupCommitWriter.maxGroup * 2 + 100
        // From here the writer answers no group (the lock is held).
        let stalledFrom = ContinuousClock.now
        let patient = Task {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for n in 0..<count {
                    tasks.addTask {
                        try await database.write(deadline: .now + .seconds(120)) { db in try db.execute(sql: "INSERT INTO t VALUES (?)", arguments: [n]) }
                    }
                }
                try await tasks.waitForAll()
            }
        }
        // (The first few form the group that waits for the lock; more than a group's worth wait
        // behind it, so the next one is behind those too.)
        try await Self.until { database.connection.writer.waitingOperations > GroupCommitWriter.maxGroup + 10 }
        // Patient enough not to be refused on arrival (a line that has answered nothing for as
        // long as a newcomer may wait is refused at once, by the forecast: a slow machine takes
        // seconds to queue the others, and more to start this write: 5 s to spare, as a busy
        // machine took more than 1), so it joins the line and its deadline passes there.
        let patience = (ContinuousClock.now - stalledFrom) + .seconds(5)
        let hurried = Task {
            try await database.write(deadline: .now + patience) { db in try db.execute(sql: "INSERT INTO t VALUES (-1)") }
        }
        // Refused at its deadline although the lock is still held and it is not in the next group.
        let answered = try await withThrowingTaskGroup(of: Bool.self) { race in
            race.addTask { _ = await hurried.result; return true }
            race.addTask { try await Task.sleep(for: patience + .seconds(30)); return false }
            defer { race.cancelAll() }
            return try await race.next() ?? false
        }
        #expect(answered, "the write behind the group was not answered while the lock was held")
        do {
            try await hurried.value
            Issue.record("a write whose deadline passed while the lock was held was stored")
        } catch let error as Overloaded {
            #expect(error.refusal == .deadline)
        }
        other.release()
        try await patient.value
        #expect(try await database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM t") } == count)
        try database.close()
    }
}
