import FlashCore
import FlashQueue
import GRDB
import Synchronization

/// A queue with SQS semantics stored in the embedded SQLite database.
///
/// Get one from ``SQLiteDatabase/createQueue(_:attributes:)`` or ``SQLiteDatabase/queue(named:)``.
/// It holds the open file (strongly), which holds no queue: valid until the database is closed.
public final class SQLiteMessageQueue: MessageQueue {
    public let name: String
    let record: QueueRecord
    let deadLetter: QueueRecord?
    /// The settings this queue works by: as stored when it was opened.
    public var attributes: QueueAttributes { record.attributes }
    let database: SQLiteConnection
    private let lastSweep = Atomic<Int64>(0)

    init(database: SQLiteConnection, record: QueueRecord, deadLetter: QueueRecord?) {
        self.database = database
        self.name = record.name
        self.record = record
        self.deadLetter = deadLetter
    }

    /// The queue's default lease.
    public var visibilityTimeout: Duration { .milliseconds(record.visibilityTimeoutMillis) }

    /// Deliveries after which a message is dead-lettered (0: never).
    public var maxReceiveCount: Int { record.maxReceiveCount }

    /// The name of the dead-letter queue, if redrive is on.
    public var deadLetterQueueName: String? { deadLetter?.name }

    // MARK: Sending

    public func send(_ body: String, delay: Duration) async throws -> String {
        let message = OutgoingMessage(body, delay: delay)
        try QueueLimits.validate(message, maxBodyBytes: record.maxBodyBytes)
        return try await database.write { db in try self.send(message, in: db) }
    }

    public func sendBatch(_ messages: [OutgoingMessage]) async throws -> [String] {
        try QueueLimits.validate(messages, maxBodyBytes: record.maxBodyBytes)
        return try await database.write { db in try messages.map { try self.send($0, in: db) } }
    }

    /// Sends a message inside a transaction the caller owns (see ``SQLiteDatabase``): the message
    /// is durable when that transaction commits, and receivers wake then.
    package func send(_ body: String, delay: Duration = .zero, in db: Database) throws -> String {
        let message = OutgoingMessage(body, delay: delay)
        try QueueLimits.validate(message, maxBodyBytes: record.maxBodyBytes)
        return try send(message, in: db)
    }

    private func send(_ message: OutgoingMessage, in db: Database) throws -> String {
        let now = self.database.time.nowMillis()
        let id = TimeOrderedID.make()
        let delay = message.delay == .zero ? record.delayMillis : message.delay.asMilliseconds
        try SQLiteQueueStorage.insert(db, into: record, messageID: id, body: message.body, now: now, delayMillis: delay)
        database.writer.touch(record.id)
        return id
    }

    /// Inserts an already-validated body with a given message id (used by topics' fan-out);
    /// returns the message's row in this queue.
    @discardableResult
    func insert(messageID: String, body: String, now: Int64, in db: Database) throws -> Int64 {
        defer { database.writer.touch(record.id) }
        return try SQLiteQueueStorage.insert(db, into: record, messageID: messageID, body: body, now: now, delayMillis: record.delayMillis)
    }

    // MARK: Receiving

    public func receive(maxMessages: Int, wait: Duration, visibilityTimeout: Duration?) async throws -> [ReceivedMessage] {
        try await receive(maxMessages: maxMessages, wait: wait, visibilityTimeout: visibilityTimeout) { _, _ in }?.messages ?? []
    }

    /// Receives as ``receive(maxMessages:wait:visibilityTimeout:)`` does, and runs `step` on the
    /// deliveries inside the transaction that leases them: both commit, or neither (a `step`
    /// that throws leaves the messages as they were). nil when nothing arrived within `wait`.
    package func receive<T: Sendable>(maxMessages: Int, wait: Duration, visibilityTimeout: Duration?,
                                     then step: @escaping @Sendable (Database, [ReceivedMessage]) throws -> T) async throws
        -> (messages: [ReceivedMessage], result: T)? {
        try QueueLimits.validateReceive(maxMessages: maxMessages, wait: wait, visibilityTimeout: visibilityTimeout)
        let visibility = visibilityTimeout?.asMilliseconds ?? record.visibilityTimeoutMillis
        let deadline = ContinuousClock.now + wait
        var looked = false
        while true {
            let generation = database.arrivals.generation(record.id)
            var next: Int64?
            if looked {
                // Woken (a send, a lease ending, another process's commit): look before taking the
                // write lock, so that wake-ups that find nothing cost a read, not a transaction.
                next = try await database.read { [record] db in try SQLiteQueueStorage.earliestVisibleAt(db, queue: record) }
            }
            if !looked || next.map({ $0 <= self.database.time.nowMillis() }) == true {
                let (outcome, result) = try await receiveOnce(maxMessages: maxMessages, visibilityMillis: visibility, step: step)
                if let result { return (outcome.messages, result) }
                next = outcome.nextVisibleAt
            }
            looked = true
            let now = ContinuousClock.now
            guard now < deadline, !Task.isCancelled else { return nil }
            var timeout = deadline - now
            if let next {
                // A delayed or leased message becomes visible then: wake for it without a send.
                let untilVisible = Duration.milliseconds(max(1, next - self.database.time.nowMillis()))
                timeout = min(timeout, untilVisible)
            }
            await database.arrivals.wait(record.id, after: generation, timeout: timeout)
        }
    }

    private func receiveOnce<T: Sendable>(maxMessages: Int, visibilityMillis: Int64,
                                          step: @escaping @Sendable (Database, [ReceivedMessage]) throws -> T) async throws
        -> (SQLiteQueueStorage.ReceiveOutcome, T?) {
        let queued = self.database.time.nowMillis()
        let sweep = queued - lastSweep.load(ordering: .relaxed) > 1000
        if sweep { lastSweep.store(queued, ordering: .relaxed) }
        return try await database.write { [record, deadLetter, database] db in
            // The lease starts when this write runs in its transaction (just before the group's
            // COMMIT), not when it joined the writer's line: time spent waiting does not eat it.
            let now = self.database.time.nowMillis()
            if sweep { try SQLiteQueueStorage.dropExpired(db, queue: record, now: now) }
            let outcome = try SQLiteQueueStorage.receive(
                db, from: record, deadLetter: deadLetter, maxMessages: maxMessages,
                visibilityMillis: visibilityMillis, now: now, touch: database.writer.touch)
            return (outcome, outcome.messages.isEmpty ? nil : try step(db, outcome.messages))
        }
    }

    // MARK: Acknowledging

    public func changeVisibility(_ receipt: ReceiptHandle, timeout: Duration) async throws {
        try QueueLimits.validateVisibility(timeout)
        try await database.write { [record, database] db in
            try SQLiteQueueStorage.changeVisibility(db, in: record, receipt: receipt, millis: timeout.asMilliseconds, now: self.database.time.nowMillis())
            // Long-pollers may have planned to wake at the old lease's end: let them re-plan.
            database.writer.touch(record.id)
        }
    }

    public func delete(_ receipt: ReceiptHandle) async throws {
        try await database.write { [record] db in
            try SQLiteQueueStorage.delete(db, from: record, receipt: receipt)
        }
    }

    /// Deletes a delivery inside a transaction the caller owns.
    package func delete(_ receipt: ReceiptHandle, in db: Database) throws {
        try SQLiteQueueStorage.delete(db, from: record, receipt: receipt)
    }

    public func deleteBatch(_ receipts: [ReceiptHandle]) async throws -> [Result<Void, QueueError>] {
        try QueueLimits.validateBatchCount(receipts.count)
        return try await database.write { [record] db in
            try receipts.map { receipt in
                do {
                    try SQLiteQueueStorage.delete(db, from: record, receipt: receipt)
                    return .success(())
                } catch let error as QueueError {
                    return .failure(error)
                }
                // A database error propagates: the transaction may be gone (see GroupCommitWriter),
                // and the other entries must not run outside it.
            }
        }
    }

    @discardableResult
    public func returnUntried(_ receipts: [ReceiptHandle]) async throws -> [Bool] {
        guard !receipts.isEmpty else { return [] }
        return try await database.write { db in try self.returnUntried(receipts, in: db) }
    }

    /// ``returnUntried(_:)`` inside a transaction the caller owns; returns, per receipt, whether
    /// it was current (a stale one changed nothing).
    @discardableResult
    package func returnUntried(_ receipts: [ReceiptHandle], in db: Database) throws -> [Bool] {
        let current = try SQLiteQueueStorage.returnUntried(db, to: record, receipts: receipts, now: self.database.time.nowMillis())
        database.writer.touch(record.id)
        return current
    }

    @discardableResult
    public func sweepExpired() async throws -> Int {
        try await database.write { [record] db in
            try SQLiteQueueStorage.dropExpired(db, queue: record, now: self.database.time.nowMillis()).dropped
        }
    }

    // MARK: Maintenance

    public func purge() async throws {
        try await database.write { [record] db in try SQLiteQueueStorage.purge(db, queue: record) }
    }

    /// Whether message `messageID`, stored at row `seq`, is still in this queue (visible, leased
    /// or delayed). The id is checked too: a row number alone is reused once the rows above it
    /// are gone (after a purge, or when the queue drains).
    func contains(seq: Int64, messageID: String, in db: Database) throws -> Bool {
        try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM \(record.table) WHERE seq = ? AND message_id = ?)"),
                          arguments: [seq, messageID]) ?? false
    }

    public func statistics() async throws -> QueueStatistics {
        try await database.read { [record, deadLetter] db in
            try SQLiteQueueStorage.statistics(db, queue: record, deadLetter: deadLetter, now: self.database.time.nowMillis())
        }
    }
}

extension SQLiteMessageQueue {
    public func countVisible(sentAtOrBefore millis: Int64) async throws -> Int {
        try await database.read { [record] db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM (SELECT 1 FROM \(record.table) WHERE visible_at <= ? LIMIT ?)",
                             arguments: [min(millis, self.database.time.nowMillis()), QueueLimits.countCeiling]) ?? 0
        }
    }
}
