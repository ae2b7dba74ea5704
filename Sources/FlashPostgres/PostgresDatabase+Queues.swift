import FlashCore
import FlashQueue
import PostgresNIO

extension PostgresDatabase {
    /// Creates a queue (and its dead-letter queue, when redrive is on), or updates the settings of
    /// an existing one (unless `replacing` is false: then the stored settings hold, and the
    /// queue's ``PostgresMessageQueue/attributes`` say what they are); its messages are kept.
    public func createQueue(_ name: String, attributes: QueueAttributes = QueueAttributes(), replacing: Bool = true) async throws -> PostgresMessageQueue {
        try attributes.validate()
        guard !name.isEmpty, name.utf8.count <= 80 else { throw QueueError.invalidAttribute("queue name must be 1 to 80 bytes") }
        var deadLetter: PostgresQueueRecord?
        if let deadLetterName = attributes.deadLetterQueueName(for: name) {
            let dlq = QueueAttributes(visibilityTimeout: attributes.visibilityTimeout, maxReceiveCount: 0,
                                      retention: QueueLimits.maxRetention, maxBodyBytes: QueueLimits.maxBodyBytesCeiling)
            deadLetter = try await upsertQueue(deadLetterName, dlq, deadLetterQueueID: nil, keepExisting: true)
        }
        let record = try await upsertQueue(name, attributes, deadLetterQueueID: deadLetter?.id, keepExisting: !replacing)
        return register(record, deadLetter: deadLetter)
    }

    /// An existing queue, by name.
    public func queue(named name: String) async throws -> PostgresMessageQueue {
        if let queue = catalog.withLock({ $0.queues[name] }) { return queue }
        let rows = try await read("SELECT \(unescaped: PostgresQueueRecord.columns) FROM fs_queues WHERE name = \(name)")
        guard let row = rows.first else { throw QueueError.queueDoesNotExist(name) }
        let record = try PostgresQueueRecord(row)
        var deadLetter: PostgresQueueRecord?
        if let id = record.deadLetterQueueID,
           let row = try await read("SELECT \(unescaped: PostgresQueueRecord.columns) FROM fs_queues WHERE id = \(id)").first {
            deadLetter = try PostgresQueueRecord(row)
        }
        return register(record, deadLetter: deadLetter)
    }

    /// Creates a topic if needed.
    public func createTopic(_ name: String) async throws -> PostgresTopic {
        if let topic = catalog.withLock({ $0.topics[name] }) { return topic }
        // DO UPDATE, not DO NOTHING and a SELECT: the SELECT reads the statement's snapshot, which
        // misses a row that another process's transaction commits meanwhile (processes starting
        // together on a fresh database then failed with "topic does not exist"); DO UPDATE waits
        // for that transaction and returns its row.
        let rows = try await query("""
            INSERT INTO fs_topics (name) VALUES (\(name)) ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id
            """)
        guard let id = try rows.first?.makeRandomAccess().get(0, as: Int64.self) else { throw QueueError.queueDoesNotExist(name) }
        let topic = PostgresTopic(database: self, id: id, name: name)
        return catalog.withLock { catalog in
            if let existing = catalog.topics[name] { return existing }
            catalog.topics[name] = topic
            return topic
        }
    }

    private func upsertQueue(_ name: String, _ attributes: QueueAttributes, deadLetterQueueID: Int64?, keepExisting: Bool) async throws -> PostgresQueueRecord {
        let now = self.time.nowMillis()
        let update = keepExisting ? "name = excluded.name" : """
            visibility_timeout_ms = excluded.visibility_timeout_ms, max_receive_count = excluded.max_receive_count,
            retention_ms = excluded.retention_ms, delay_ms = excluded.delay_ms, max_body_bytes = excluded.max_body_bytes,
            dead_letter_queue_id = excluded.dead_letter_queue_id
            """
        let rows = try await query("""
            INSERT INTO fs_queues (name, visibility_timeout_ms, max_receive_count, retention_ms, delay_ms, max_body_bytes, dead_letter_queue_id, created_at)
            VALUES (\(name), \(attributes.visibilityTimeout.asMilliseconds), \(attributes.maxReceiveCount), \(attributes.retention.asMilliseconds),
                    \(attributes.deliveryDelay.asMilliseconds), \(attributes.maxBodyBytes), \(deadLetterQueueID), \(now))
            ON CONFLICT (name) DO UPDATE SET \(unescaped: update)
            RETURNING \(unescaped: PostgresQueueRecord.columns)
            """)
        guard let row = rows.first else { throw QueueError.queueDoesNotExist(name) }
        return try PostgresQueueRecord(row)
    }

    private func register(_ record: PostgresQueueRecord, deadLetter: PostgresQueueRecord?) -> PostgresMessageQueue {
        let queue = PostgresMessageQueue(database: self, record: record, deadLetter: deadLetter)
        return catalog.withLock { catalog in
            if let existing = catalog.queues[record.name], existing.record == record, existing.deadLetter == deadLetter { return existing }
            catalog.queues[record.name] = queue
            return queue
        }
    }
}

/// The queues and topics a process has opened, by name.
struct PostgresCatalog {
    var queues: [String: PostgresMessageQueue] = [:]
    var topics: [String: PostgresTopic] = [:]
}
