import FlashCore
import FlashQueue
import GRDB
import Synchronization

/// A fan-out topic (SNS semantics, raw delivery) whose subscribers are queues in the same database.
///
/// Publishing inserts the message into every subscribed queue in one transaction.
public final class SQLiteTopic: Topic {
    public let name: String
    let id: Int64
    let connection: SQLiteConnection
    /// The database whose catalog holds this topic (weak: the catalog holds the topic).
    private weak let database: SQLiteDatabase?
    private let subscribers: Mutex<[SQLiteMessageQueue]>

    init(database: SQLiteDatabase, id: Int64, name: String, subscribers: [SQLiteMessageQueue]) {
        self.database = database
        self.connection = database.connection
        self.id = id
        self.name = name
        self.subscribers = Mutex(subscribers)
    }

    public func subscribe(queue name: String) async throws {
        guard let database else { throw QueueError.queueDoesNotExist(name) }
        let queue = try await database.queue(named: name)
        try await connection.write { [id] db in
            try db.execute(sql: "INSERT OR IGNORE INTO fs_subscriptions (topic_id, queue_id) VALUES (?, ?)",
                           arguments: [id, queue.record.id])
        }
        subscribers.withLock { list in
            if !list.contains(where: { $0.record.id == queue.record.id }) { list.append(queue) }
        }
    }

    public func subscriptions() async throws -> [String] {
        subscribers.withLock { $0.map(\.name) }
    }

    public func publish(_ body: String) async throws -> String {
        try validate(body)
        return try await connection.write { db in try self.publish(body, in: db) }
    }

    /// Publishes inside a transaction the caller owns (see ``SQLiteDatabase``), e.g. together with
    /// the order row the message announces. Returns the message id, shared by every queue's copy.
    package func publish(_ body: String, in db: Database) throws -> String {
        try publish(body, at: self.connection.time.nowMillis(), in: db, rowIn: nil).messageID
    }

    /// Publishes with a given send time (Unix ms), e.g. the timestamp of the order it announces.
    /// Returns the message id and the row the queue with id `rowIn` stored it in (nil if that
    /// queue is not subscribed).
    func publish(_ body: String, at now: Int64, in db: Database, rowIn queueID: Int64?) throws -> (messageID: String, row: Int64?) {
        try validate(body)
        let id = TimeOrderedID.make()
        var row: Int64?
        for queue in subscribers.withLock({ $0 }) {
            let seq = try queue.insert(messageID: id, body: body, now: now, in: db)
            if queue.record.id == queueID { row = seq }
        }
        return (id, row)
    }

    private func validate(_ body: String) throws {
        for queue in subscribers.withLock({ $0 }) {
            try QueueLimits.validate(OutgoingMessage(body), maxBodyBytes: queue.record.maxBodyBytes)
        }
    }
}
