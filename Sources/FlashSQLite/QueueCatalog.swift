import FlashQueue
import GRDB

/// A queue as the SQLite backend knows it: its id, its message table and its settings.
struct QueueRecord: Sendable, Hashable {
    var id: Int64
    var name: String
    var visibilityTimeoutMillis: Int64
    var maxReceiveCount: Int
    var retentionMillis: Int64
    var delayMillis: Int64
    var maxBodyBytes: Int
    var deadLetterQueueID: Int64?

    var table: String { SQLiteSchema.messageTable(id) }

    init(row: Row) {
        id = row["id"]
        name = row["name"]
        visibilityTimeoutMillis = row["visibility_timeout_ms"]
        maxReceiveCount = row["max_receive_count"]
        retentionMillis = row["retention_ms"]
        delayMillis = row["delay_ms"]
        maxBodyBytes = row["max_body_bytes"]
        deadLetterQueueID = row["dead_letter_queue_id"]
    }

    static func load(_ db: Database, name: String) throws -> QueueRecord? {
        try Row.fetchOne(db, sql: "SELECT * FROM fs_queues WHERE name = ?", arguments: [name]).map(QueueRecord.init(row:))
    }

    static func load(_ db: Database, id: Int64) throws -> QueueRecord? {
        try Row.fetchOne(db, sql: "SELECT * FROM fs_queues WHERE id = ?", arguments: [id]).map(QueueRecord.init(row:))
    }

    /// The stored settings (the dead-letter queue by its default name).
    var attributes: QueueAttributes {
        QueueAttributes(visibilityTimeout: .milliseconds(visibilityTimeoutMillis), maxReceiveCount: maxReceiveCount,
                        retention: .milliseconds(retentionMillis), deliveryDelay: .milliseconds(delayMillis), maxBodyBytes: maxBodyBytes)
    }

    /// Creates the queue, or, when `replacing`, updates the settings of an existing one (else
    /// they stay as stored); returns its record, with the settings that hold.
    static func upsert(_ db: Database, name: String, attributes: QueueAttributes, deadLetterQueueID: Int64?, now: Int64,
                       replacing: Bool = true) throws -> QueueRecord {
        let onConflict = replacing ? """
            DO UPDATE SET
                visibility_timeout_ms = excluded.visibility_timeout_ms,
                max_receive_count = excluded.max_receive_count,
                retention_ms = excluded.retention_ms,
                delay_ms = excluded.delay_ms,
                max_body_bytes = excluded.max_body_bytes,
                dead_letter_queue_id = excluded.dead_letter_queue_id
            """ : "DO NOTHING"
        try db.execute(sql: """
            INSERT INTO fs_queues (name, visibility_timeout_ms, max_receive_count, retention_ms, delay_ms,
                                   max_body_bytes, dead_letter_queue_id, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(name) \(onConflict)
            """, arguments: [
                name, attributes.visibilityTimeout.asMilliseconds, attributes.maxReceiveCount,
                attributes.retention.asMilliseconds, attributes.deliveryDelay.asMilliseconds,
                attributes.maxBodyBytes, deadLetterQueueID, now,
            ])
        guard let record = try load(db, name: name) else { throw QueueError.queueDoesNotExist(name) }
        try SQLiteSchema.createMessageTable(db, queueID: record.id)
        return record
    }
}

/// The queues and topics this process has opened, by name.
struct QueueCatalog {
    var queues: [String: SQLiteMessageQueue] = [:]
    var topics: [String: SQLiteTopic] = [:]
}
