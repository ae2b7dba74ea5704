import FlashCore
import FlashQueue
import GRDB

/// The SQL of the queue contract, on one queue's message table. Every function runs inside a
/// transaction that the caller owns (the group-commit writer, or a caller's own `write`).
enum SQLiteQueueStorage {
    /// What a receive found: the deliveries, and when the next message becomes visible (if any).
    struct ReceiveOutcome: Sendable {
        var messages: [ReceivedMessage]
        var nextVisibleAt: Int64?
    }

    /// Inserts a message; returns its row (`seq`), which names it while it is in the queue.
    @discardableResult
    static func insert(_ db: Database, into queue: QueueRecord, messageID: String, body: String, now: Int64, delayMillis: Int64) throws -> Int64 {
        let statement = try db.cachedStatement(sql: """
            INSERT INTO \(queue.table) (message_id, body, sent_at, visible_at) VALUES (?, ?, ?, ?)
            """)
        try statement.execute(arguments: [messageID, body, now, now + delayMillis])
        return db.lastInsertedRowID
    }

    static func receive(
        _ db: Database, from queue: QueueRecord, deadLetter: QueueRecord?, maxMessages: Int,
        visibilityMillis: Int64, now: Int64, touch: (Int64) -> Void
    ) throws -> ReceiveOutcome {
        var messages: [ReceivedMessage] = []
        var generator = SecureRandom()
        let select = try db.cachedStatement(sql: """
            SELECT seq, message_id, body, sent_at, receive_count, first_received_at
            FROM \(queue.table) WHERE visible_at <= ? ORDER BY visible_at LIMIT ?
            """)
        let lease = try db.cachedStatement(sql: """
            UPDATE \(queue.table)
            SET visible_at = ?, receive_count = receive_count + 1, receipt = ?,
                first_received_at = CASE first_received_at WHEN 0 THEN ? ELSE first_received_at END
            WHERE seq = ?
            """)
        let retentionCutoff = now - queue.retentionMillis
        var expired = 0
        while messages.count < maxMessages {
            let rows = try Row.fetchAll(select, arguments: [now, maxMessages - messages.count])
            if rows.isEmpty { break }
            for row in rows {
                let seq: Int64 = row[0]
                let sentAt: Int64 = row[3]
                let receiveCount: Int = row[4]
                if sentAt < retentionCutoff {
                    try deleteRow(db, queue: queue, seq: seq)
                    expired += 1
                    continue
                }
                if queue.maxReceiveCount > 0, receiveCount >= queue.maxReceiveCount, let deadLetter {
                    try db.cachedStatement(sql: """
                        INSERT INTO \(deadLetter.table) (message_id, body, sent_at, visible_at, receive_count)
                        SELECT message_id, body, sent_at, ?, receive_count FROM \(queue.table) WHERE seq = ?
                        """).execute(arguments: [now, seq])
                    try deleteRow(db, queue: queue, seq: seq)
                    touch(deadLetter.id)
                    continue
                }
                var token = Int64(bitPattern: generator.next())
                if token == 0 { token = 1 }
                try lease.execute(arguments: [now + visibilityMillis, token, now, seq])
                let firstReceived: Int64 = row[5]
                messages.append(ReceivedMessage(
                    messageID: row[1],
                    receiptHandle: ReceiptCodec.encode(queueID: queue.id, seq: seq, token: token),
                    body: row[2],
                    receiveCount: receiveCount + 1,
                    sentAtMillis: sentAt,
                    firstReceivedAtMillis: firstReceived == 0 ? now : firstReceived))
            }
        }
        if expired > 0 { try addExpired(db, queue: queue, count: expired) }
        var next: Int64?
        if messages.isEmpty {
            next = try Int64.fetchOne(db.cachedStatement(sql: "SELECT MIN(visible_at) FROM \(queue.table)"))
        }
        return ReceiveOutcome(messages: messages, nextVisibleAt: next)
    }

    /// The earliest `visible_at` of the queue's messages (one step down the index), nil when
    /// the queue is empty: whether a receive now would find anything, without taking the lock.
    static func earliestVisibleAt(_ db: Database, queue: QueueRecord) throws -> Int64? {
        try Int64.fetchOne(db.cachedStatement(sql: "SELECT visible_at FROM \(queue.table) ORDER BY visible_at LIMIT 1"))
    }

    static func delete(_ db: Database, from queue: QueueRecord, receipt: ReceiptHandle) throws {
        let (seq, token) = try ReceiptCodec.decode(receipt, queueID: queue.id)
        try db.cachedStatement(sql: "DELETE FROM \(queue.table) WHERE seq = ? AND receipt = ?")
            .execute(arguments: [seq, token])
        guard db.changesCount == 1 else { throw QueueError.receiptHandleInvalid(receipt.rawValue) }
    }

    static func changeVisibility(_ db: Database, in queue: QueueRecord, receipt: ReceiptHandle, millis: Int64, now: Int64) throws {
        let (seq, token) = try ReceiptCodec.decode(receipt, queueID: queue.id)
        try db.cachedStatement(sql: "UPDATE \(queue.table) SET visible_at = ? WHERE seq = ? AND receipt = ?")
            .execute(arguments: [now + millis, seq, token])
        guard db.changesCount == 1 else { throw QueueError.receiptHandleInvalid(receipt.rawValue) }
    }

    /// Gives deliveries back untried: visible now, the delivery uncounted, the receipt retired.
    /// Returns, per receipt, whether it was current.
    @discardableResult
    static func returnUntried(_ db: Database, to queue: QueueRecord, receipts: [ReceiptHandle], now: Int64) throws -> [Bool] {
        let statement = try db.cachedStatement(sql: """
            UPDATE \(queue.table)
            SET visible_at = ?, receive_count = MAX(0, receive_count - 1), receipt = 0,
                first_received_at = CASE WHEN receive_count <= 1 THEN 0 ELSE first_received_at END
            WHERE seq = ? AND receipt = ?
            """)
        var current: [Bool] = []
        for receipt in receipts {
            guard let (seq, token) = try? ReceiptCodec.decode(receipt, queueID: queue.id) else {
                current.append(false)
                continue
            }
            try statement.execute(arguments: [now, seq, token])
            current.append(db.changesCount == 1)
        }
        return current
    }

    static func purge(_ db: Database, queue: QueueRecord) throws {
        try db.execute(sql: "DELETE FROM \(queue.table)")
    }

    /// What a retention sweep did.
    struct SweepOutcome: Sendable, Hashable {
        /// Messages dropped.
        var dropped = 0
        /// Rows looked at: a sweep of a queue with nothing expired looks at one.
        var examined = 0
    }

    /// Drops the messages older than the retention period, from the table's left edge.
    ///
    /// Rowids follow send order, so the expired messages are the table's oldest rows: the sweep
    /// walks from the left edge in pages and stops at the first message still within retention,
    /// so with nothing expired it reads one row, whatever the backlog (a `DELETE … WHERE
    /// sent_at < ?` would scan every row: there is no index on `sent_at`, and one would tax
    /// every send). At most `limit` rows per call keep the writer's transaction short; the
    /// receive path drops any expired row it meets, and the next sweep continues.
    @discardableResult
    static func dropExpired(_ db: Database, queue: QueueRecord, now: Int64, limit: Int = 2_000) throws -> SweepOutcome {
        let cutoff = now - queue.retentionMillis
        let page = try db.cachedStatement(sql: "SELECT seq, sent_at FROM \(queue.table) WHERE seq > ? ORDER BY seq LIMIT ?")
        var outcome = SweepOutcome()
        var lastExpired: Int64?
        var after: Int64 = 0
        scan: while outcome.examined < limit {
            let rows = try Row.fetchAll(page, arguments: [after, min(256, limit - outcome.examined)])
            if rows.isEmpty { break }
            for row in rows {
                outcome.examined += 1
                let seq: Int64 = row[0]
                let sentAt: Int64 = row[1]
                guard sentAt < cutoff else { break scan }
                lastExpired = seq
                after = seq
            }
        }
        if let lastExpired {
            try db.cachedStatement(sql: "DELETE FROM \(queue.table) WHERE seq <= ?").execute(arguments: [lastExpired])
            outcome.dropped = db.changesCount
            if outcome.dropped > 0 { try addExpired(db, queue: queue, count: outcome.dropped) }
        }
        return outcome
    }

    static func statistics(_ db: Database, queue: QueueRecord, deadLetter: QueueRecord?, now: Int64) throws -> QueueStatistics {
        let visible = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(queue.table) WHERE visible_at <= ?", arguments: [now]) ?? 0
        let hidden = try Row.fetchOne(db, sql: """
            SELECT COALESCE(SUM(receive_count > 0), 0), COALESCE(SUM(receive_count = 0), 0),
                   MAX(CASE WHEN receive_count > 0 THEN visible_at END)
            FROM \(queue.table) WHERE visible_at > ?
            """, arguments: [now])
        let oldest = try Int64.fetchOne(db, sql: "SELECT sent_at FROM \(queue.table) ORDER BY seq LIMIT 1")
        let dead = try deadLetter.map { try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \($0.table)") ?? 0 } ?? 0
        let expired = try Int.fetchOne(db, sql: "SELECT expired_count FROM fs_queues WHERE id = ?", arguments: [queue.id]) ?? 0
        return QueueStatistics(
            visible: visible,
            inFlight: hidden?[0] ?? 0,
            delayed: hidden?[1] ?? 0,
            deadLettered: dead,
            oldestAgeSeconds: oldest.map { max(0, Double(now - $0) / 1000) } ?? 0,
            expired: expired,
            leasesEndInSeconds: hidden.flatMap { $0[2] as Int64? }.map { max(0, Double($0 - now) / 1000) } ?? 0)
    }

    private static func deleteRow(_ db: Database, queue: QueueRecord, seq: Int64) throws {
        try db.cachedStatement(sql: "DELETE FROM \(queue.table) WHERE seq = ?").execute(arguments: [seq])
    }

    private static func addExpired(_ db: Database, queue: QueueRecord, count: Int) throws {
        try db.execute(sql: "UPDATE fs_queues SET expired_count = expired_count + ? WHERE id = ?", arguments: [count, queue.id])
    }
}
