import FlashCore
import FlashQueue
import GRDB

extension SQLiteDatabase {
    /// Creates a queue (and its dead-letter queue, when redrive is on), or updates the settings of
    /// an existing one (unless `replacing` is false: then the stored settings hold, and the
    /// queue's ``SQLiteMessageQueue/attributes`` say what they are). Its unacknowledged messages,
    /// if any, are kept.
    public func createQueue(_ name: String, attributes: QueueAttributes = QueueAttributes(), replacing: Bool = true) async throws -> SQLiteMessageQueue {
        try attributes.validate()
        guard !name.isEmpty, name.utf8.count <= 80 else { throw QueueError.invalidAttribute("queue name must be 1 to 80 bytes") }
        let deadLetterName = attributes.deadLetterQueueName(for: name)
        let (record, deadLetter) = try await write { db -> (QueueRecord, QueueRecord?) in
            let now = self.connection.time.nowMillis()
            var deadLetter: QueueRecord?
            if let deadLetterName {
                let existing = try QueueRecord.load(db, name: deadLetterName)
                let dlqAttributes = QueueAttributes(
                    visibilityTimeout: attributes.visibilityTimeout, maxReceiveCount: 0,
                    retention: QueueLimits.maxRetention, maxBodyBytes: QueueLimits.maxBodyBytesCeiling)
                deadLetter = try existing ?? QueueRecord.upsert(db, name: deadLetterName, attributes: dlqAttributes, deadLetterQueueID: nil, now: now)
            }
            let record = try QueueRecord.upsert(db, name: name, attributes: attributes, deadLetterQueueID: deadLetter?.id, now: now,
                                                replacing: replacing)
            return (record, deadLetter)
        }
        return register(record: record, deadLetter: deadLetter)
    }

    /// An existing queue, by name.
    public func queue(named name: String) async throws -> SQLiteMessageQueue {
        if let queue = catalog.withLock({ $0.queues[name] }) { return queue }
        let found = try await read { db -> (QueueRecord, QueueRecord?)? in
            guard let record = try QueueRecord.load(db, name: name) else { return nil }
            let deadLetter = try record.deadLetterQueueID.flatMap { try QueueRecord.load(db, id: $0) }
            return (record, deadLetter)
        }
        guard let (record, deadLetter) = found else { throw QueueError.queueDoesNotExist(name) }
        return register(record: record, deadLetter: deadLetter)
    }

    /// The names of every queue in the database.
    public func queueNames() async throws -> [String] {
        try await read { db in try String.fetchAll(db, sql: "SELECT name FROM fs_queues ORDER BY id") }
    }

    /// Creates a topic if needed, with its existing subscriptions.
    public func createTopic(_ name: String) async throws -> SQLiteTopic {
        let (id, queueNames) = try await write { db -> (Int64, [String]) in
            try db.execute(sql: "INSERT OR IGNORE INTO fs_topics (name) VALUES (?)", arguments: [name])
            let id = try Int64.fetchOne(db, sql: "SELECT id FROM fs_topics WHERE name = ?", arguments: [name])!
            let queues = try String.fetchAll(db, sql: """
                SELECT q.name FROM fs_subscriptions s JOIN fs_queues q ON q.id = s.queue_id WHERE s.topic_id = ?
                """, arguments: [id])
            return (id, queues)
        }
        if let topic = catalog.withLock({ $0.topics[name] }) { return topic }
        var subscribers: [SQLiteMessageQueue] = []
        for queueName in queueNames { subscribers.append(try await queue(named: queueName)) }
        let topic = SQLiteTopic(database: self, id: id, name: name, subscribers: subscribers)
        return catalog.withLock { catalog in
            if let existing = catalog.topics[name] { return existing }
            catalog.topics[name] = topic
            return topic
        }
    }

    private func register(record: QueueRecord, deadLetter: QueueRecord?) -> SQLiteMessageQueue {
        let queue = SQLiteMessageQueue(database: connection, record: record, deadLetter: deadLetter)
        return catalog.withLock { catalog in
            if let existing = catalog.queues[record.name], existing.record == record, existing.deadLetter == deadLetter {
                return existing
            }
            catalog.queues[record.name] = queue
            return queue
        }
    }
}
