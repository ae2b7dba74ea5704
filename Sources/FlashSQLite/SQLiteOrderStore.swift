import FlashCore
import FlashOrders
import FlashQueue
import GRDB
import Synchronization

/// Orders, stock and payment messages in the embedded database: ``OrderStore``'s primitives on
/// SQLite, with the core's rules (``InventoryRules``, the ``Order`` transitions, ``PaymentMessage``).
///
/// Placing a queued order is one transaction: the order row, its stock reservation and its message on the `orders` topic commit together (group-committed with concurrent
/// orders). The order keeps the row of its message in the payments queue, so the reconciler can
/// tell with one primary-key look-up whether anything will still deliver it. The store holds
/// the payments queue, so recording a result and deleting the message is one transaction too.
public final class SQLiteOrderStore: OrderStore {
    let database: SQLiteDatabase
    let topic: SQLiteTopic
    let queue: SQLiteMessageQueue
    /// Refuse items whose product is not in the catalog.
    public let strictCatalog: Bool
    /// Where counter changes go: written once per counter per group commit.
    /// The file's group-commit writer: stored counters are moved through it.
    let writer: GroupCommitWriter
    public var admissionLine: AdmissionLine? { writer.line }

    /// - Parameters:
    ///   - topic: where queued orders' payment messages are published.
    ///   - paymentsQueue: the topic's subscriber the workers read.
    public init(database: SQLiteDatabase, topic: SQLiteTopic, paymentsQueue: SQLiteMessageQueue, strictCatalog: Bool = false) async throws {
        self.database = database
        self.topic = topic
        self.queue = paymentsQueue
        self.strictCatalog = strictCatalog
        self.writer = database.connection.writer
        try await Self.backfillMessageRows(database, queue: paymentsQueue)
        if let deadLetter = paymentsQueue.deadLetter {
            // Dead letters are looked up by message id (the orphan scan, a redrive); dead-lettering
            // is rare, so the index costs the receive path nothing that matters.
            try await database.write { db in
                try db.execute(sql: "CREATE INDEX IF NOT EXISTS \(deadLetter.table)_message ON \(deadLetter.table)(message_id)")
            }
        }
    }

    public var paymentsQueue: any MessageQueue { queue }

    // MARK: Placing

    public func placeQueued(_ order: NewOrder) async throws -> Placement {
        try await place(order, queued: true, holdUntil: nil)
    }

    public func placeImmediate(_ order: NewOrder, holdUntil: Int64) async throws -> Placement {
        try await place(order, queued: false, holdUntil: holdUntil)
    }

    private func place(_ order: NewOrder, queued: Bool, holdUntil: Int64?) async throws -> Placement {
        let strict = strictCatalog
        let paymentsQueueID = queue.record.id
        return try await database.write(deadline: order.admitBy) { [topic, writer] db -> Placement in
            if let existing = try Self.existing(db, order: order) { return Placement(order: existing, messageID: existing.messageID, created: false) }
            // The fingerprint is taken from the items as sent, before catalog prices fill in.
            let fingerprint = order.storedFingerprint
            let (reservation, prices) = try SQLiteInventory.reserve(db, items: order.items, customerID: order.customerID,
                                                                    strictCatalog: strict || order.requiresCatalog)
            let order = order.priced(by: prices)
            let now = self.database.time.nowMillis()
            var messageID: String?
            var messageSeq: Int64?
            if queued {
                let body = PaymentMessage(orderID: order.id, customerID: order.customerID, total: order.total).body
                // The message shares the order's timestamp: queue positions compare the two.
                (messageID, messageSeq) = try topic.publish(body, at: now, in: db, rowIn: paymentsQueueID)
            }
            let stored = Order.placed(order, queued: queued, messageID: messageID, now: now)
            try db.cachedStatement(sql: """
                INSERT INTO fs_orders (order_id, idempotency_key, customer_id, items, total, status, channel, attempts,
                                       reserved, message_id, created_at, updated_at, processing_at,
                                       message_seq, hold_until, request_fingerprint)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: [
                    stored.id, order.idempotencyKey, stored.customerID, OrderItem.encodeList(stored.items), stored.total,
                    stored.status.rawValue, stored.channel.rawValue, stored.attempts,
                    reservation.encoded, messageID, now, now, stored.processingAt,
                    messageSeq, holdUntil, fingerprint,
                ])
            // No counter write for a queued order (the accept path): pending is derived (see counts()).
            if stored.status != .pending { writer.addToCounter(OrderCounts.counterName(stored.status), 1) }
            return Placement(order: stored, messageID: messageID, created: true)
        }
    }

    /// The order a repeated request names: by the customer's idempotency key, else by the
    /// client's order id. Throws ``PlacementConflict`` when that order was placed by another
    /// request (or, for an order id, another customer).
    private static func existing(_ db: Database, order: NewOrder) throws -> Order? {
        if let key = order.idempotencyKey,
           let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM fs_orders WHERE customer_id = ? AND idempotency_key = ?"),
                                      arguments: [order.customerID, key]) {
            try requireSameRequest(row, order, key: key)
            return decodeOrder(row)
        }
        guard order.idChosenByClient,
              let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM fs_orders WHERE order_id = ?"), arguments: [order.id])
        else { return nil }
        let customer: String = row["customer_id"]
        guard customer == order.customerID else { throw PlacementConflict.orderIDTaken(orderID: order.id) }
        try requireSameRequest(row, order, key: order.idempotencyKey ?? order.id)
        return decodeOrder(row)
    }

    private static func requireSameRequest(_ row: Row, _ order: NewOrder, key: String) throws {
        // Orders stored before fingerprints existed (schema v1) match any repeat, as they did.
        if let stored: String = row["request_fingerprint"], stored != order.fingerprint {
            throw PlacementConflict.idempotencyMismatch(key: key)
        }
    }

    // MARK: Reading

    public func order(id: String) async throws -> Order? {
        try await database.read { db in try Self.order(db, id: id) }
    }

    public func orders(status: OrderStatus?, before cursor: Int64?, limit: Int) async throws -> OrderPage {
        // Down the rowid (`seq`) from the cursor: open orders through the partial index of open
        // ones, finished ones from the newest, which a console looks at.
        try await database.read { db in
            var sql = "SELECT * FROM fs_orders WHERE seq < ?"
            var arguments: StatementArguments = [cursor ?? Int64.max]
            if let status {
                sql += " AND status = ?"
                arguments += [status.rawValue]
            }
            sql += " ORDER BY seq DESC LIMIT ?"
            arguments += [limit + 1]
            let rows = try Row.fetchAll(db, sql: sql, arguments: arguments)
            return OrderPage(rows: rows.map { (Self.decodeOrder($0), $0["seq"] as Int64) }, limit: limit)
        }
    }

    static func order(_ db: Database, id: String) throws -> Order? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM fs_orders WHERE order_id = ?"), arguments: [id]).map(decodeOrder)
    }

    /// Stored counters for processing, completed and failed; pending is the rest of all orders.
    /// Orders are never deleted and `seq` is the rowid, so MAX(seq) (one step down the table's
    /// b-tree) is the number of orders: placing a queued order, the accept path, writes no
    /// counter. (If orders are ever pruned, a counter of pruned orders joins the sum.)
    public func counts() async throws -> OrderCounts {
        try await database.read { db in
            let counters = try SQLiteSchema.counters(db)
            let total = try Int.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(MAX(seq), 0) FROM fs_orders")) ?? 0
            return OrderCounts(counters: counters, placed: total)
        }
    }

    // MARK: Processing

    /// Stores an order's new state (one of the core's transitions) and moves the status counters
    /// (buffered by the writer: summed per group commit). Pending has no counter of its own
    /// (see counts()).
    private static func store(_ order: Order, from previous: OrderStatus, _ db: Database, _ writer: GroupCommitWriter) throws {
        try db.cachedStatement(sql: """
            UPDATE fs_orders SET status = ?, attempts = ?, failure_reason = ?, updated_at = ?, processing_at = ?, finished_at = ?
            WHERE order_id = ?
            """).execute(arguments: [order.status.rawValue, order.attempts, order.failureReason, order.updatedAt,
                                     order.processingAt, order.finishedAt, order.id])
        guard order.status != previous else { return }
        if previous != .pending { writer.addToCounter(OrderCounts.counterName(previous), -1) }
        if order.status != .pending { writer.addToCounter(OrderCounts.counterName(order.status), 1) }
    }

    public func startProcessing(_ orderIDs: [String]) async throws -> [String: Order] {
        try await database.write { [writer] db in try Self.startProcessing(orderIDs, db, writer, now: self.database.time.nowMillis()) }
    }

    /// One transaction leases the deliveries and starts their orders (the queue is in this file).
    public func claim(maxMessages: Int, wait: Duration, visibilityTimeout: Duration) async throws -> [Claim] {
        let claimed = try await queue.receive(maxMessages: maxMessages, wait: wait, visibilityTimeout: visibilityTimeout) {
            [writer, database] db, messages in
            try Self.startProcessing(messages.compactMap { PaymentMessage.orderID(in: $0.body) }, db, writer, now: database.time.nowMillis())
        }
        guard let claimed else { return [] }
        return Claim.pairing(claimed.messages, with: claimed.result)
    }

    static func startProcessing(_ orderIDs: [String], _ db: Database, _ writer: GroupCommitWriter, now: Int64) throws -> [String: Order] {
        var orders: [String: Order] = [:]
        for id in orderIDs {
            guard let order = try Self.order(db, id: id) else { continue }
            if let next = order.startingAttempt(now: now) {
                try Self.store(next, from: order.status, db, writer)
                orders[id] = next
            } else {
                orders[id] = order
            }
        }
        return orders
    }

    public func returnUntried(_ deliveries: [UntriedDelivery]) async throws {
        guard !deliveries.isEmpty else { return }
        try await database.write { [queue, writer] db in
            let current = try queue.returnUntried(deliveries.map(\.receipt), in: db)
            // A stale receipt's message was delivered again meanwhile: the attempt now on the
            // order is that delivery's.
            let ids = zip(deliveries, current).compactMap { delivery, isCurrent in isCurrent ? delivery.orderID : nil }
            try Self.returnAttempts(ids, db, writer, now: self.database.time.nowMillis())
        }
    }

    public func returnAttempts(_ orderIDs: [String]) async throws {
        guard !orderIDs.isEmpty else { return }
        try await database.write { [writer] db in try Self.returnAttempts(orderIDs, db, writer, now: self.database.time.nowMillis()) }
    }

    private static func returnAttempts(_ orderIDs: [String], _ db: Database, _ writer: GroupCommitWriter, now: Int64) throws {
        for id in orderIDs {
            guard let order = try order(db, id: id), let returned = order.returningUntried(now: now) else { continue }
            try store(returned, from: order.status, db, writer)
        }
    }

    @discardableResult
    public func finish(_ orderID: String, result: OrderResult, deleting receipt: ReceiptHandle?) async throws -> Order? {
        try await finish(orderID, result: result, deleting: receipt, counted: false, event: nil)?.order
    }

    public func settle(_ orderID: String, result: OrderResult, counted: Bool, event: OrderEvent?) async throws -> FinishedOrder? {
        try await finish(orderID, result: result, deleting: nil, counted: counted, event: event)
    }

    private func finish(_ orderID: String, result: OrderResult, deleting receipt: ReceiptHandle?, counted: Bool,
                        event: OrderEvent?) async throws -> FinishedOrder? {
        try await database.write { [queue, writer] db -> FinishedOrder? in
            if let receipt {
                do {
                    try queue.delete(receipt, in: db)
                } catch QueueError.receiptHandleInvalid {
                    // Stale: redelivered to someone else, or purged. The result stands all the same.
                }
            }
            guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM fs_orders WHERE order_id = ?"), arguments: [orderID]) else {
                return nil
            }
            let order = Self.decodeOrder(row)
            guard let finished = order.finishing(result, now: self.database.time.nowMillis()) else { return FinishedOrder(order: order, changed: false) }
            try Self.store(finished, from: order.status, db, writer)
            let reservation = Reservation(encoded: row["reserved"])
            if !reservation.isEmpty {
                try SQLiteInventory.close(db, reservation: reservation, customerID: order.customerID, sold: finished.status == .completed)
            }
            if counted {
                writer.addToCounter(finished.status == .completed ? Self.settledCompleted : Self.settledFailed, 1)
            }
            if let event { try Self.record(event, db) }
            return FinishedOrder(order: finished, changed: true)
        }
    }

    // MARK: Reconciling

    public func orphans(after cursor: Int64, limit: Int) async throws -> OrphanScan {
        try await database.read { [queue] db in
            // The partial index holds only open orders, so a page costs its own rows, however
            // many orders have finished. Sync orders have no message: ``expiredHolds`` finds them.
            let rows = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT seq, order_id, channel, message_seq, message_id, created_at FROM fs_orders INDEXED BY fs_orders_open
                WHERE status IN ('pending', 'processing') AND seq > ? ORDER BY seq LIMIT ?
                """), arguments: [cursor, limit])
            var orphans: [Orphan] = []
            for row in rows where row["channel"] as String != OrderChannel.sync.rawValue {
                let seq: Int64? = row["message_seq"]
                let messageID: String? = row["message_id"]
                let live = if let seq, let messageID { try queue.contains(seq: seq, messageID: messageID, in: db) } else { false }
                guard !live else { continue }
                let dead = if let messageID, let deadLetter = queue.deadLetter {
                    try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM \(deadLetter.table) WHERE message_id = ?)"),
                                      arguments: [messageID]) ?? false
                } else { false }
                orphans.append(Orphan(orderID: row["order_id"], reason: dead ? .deadLettered : .messageGone, placedAt: row["created_at"]))
            }
            let last: Int64? = rows.last?["seq"]
            return OrphanScan(orphans: orphans, nextCursor: rows.count < limit ? nil : last)
        }
    }

    public func expiredHolds(now: Int64, limit: Int) async throws -> [Orphan] {
        try await database.read { db in
            try String.fetchAll(db.cachedStatement(sql: """
                SELECT order_id FROM fs_orders INDEXED BY fs_orders_sync_holds
                WHERE channel = 'sync' AND status IN ('pending', 'processing') AND hold_until < ? ORDER BY hold_until LIMIT ?
                """), arguments: [now, limit]).map { Orphan(orderID: $0, reason: .syncRequestEnded) }
        }
    }

    // MARK: Dead letters

    public func deadLetters(limit: Int, openOnly: Bool) async throws -> [DeadLetter] {
        guard let deadLetter = queue.deadLetter else { return [] }
        return try await database.read { db in
            // Oldest first, a page at a time; with `openOnly`, until `limit` open ones are found
            // (an admin read: it costs the dead letters it passes, settled ones included).
            var letters: [DeadLetter] = []
            var after: Int64 = 0
            while letters.count < limit {
                let rows = try Row.fetchAll(db, sql: """
                    SELECT seq, message_id, body, sent_at, visible_at, receive_count FROM \(deadLetter.table)
                    WHERE seq > ? ORDER BY seq LIMIT ?
                    """, arguments: [after, openOnly ? 1_000 : limit])
                for row in rows {
                    let letter = try Self.deadLetter(row, db)
                    if !openOnly || letter.order.map({ !$0.status.isTerminal }) == true { letters.append(letter) }
                    if letters.count == limit { break }
                }
                guard openOnly, let last = rows.last else { break }
                after = last["seq"]
            }
            return letters
        }
    }

    public func deadLetter(messageID: String) async throws -> DeadLetter? {
        guard let deadLetter = queue.deadLetter else { return nil }
        return try await database.read { db in
            try Row.fetchOne(db, sql: """
                SELECT message_id, body, sent_at, visible_at, receive_count FROM \(deadLetter.table) WHERE message_id = ?
                """, arguments: [messageID]).map { try Self.deadLetter($0, db) }
        }
    }

    private static func deadLetter(_ row: Row, _ db: Database) throws -> DeadLetter {
        let orderID = PaymentMessage.orderID(in: row["body"])
        return DeadLetter(messageID: row["message_id"], orderID: orderID, receiveCount: row["receive_count"],
                          sentAt: row["sent_at"], hiddenUntil: row["visible_at"], order: try orderID.flatMap { try Self.order(db, id: $0) })
    }

    public func markDeadLettered(_ orderID: String, messageID: String, verifying: Bool, by actor: String) async throws -> DeadLetterMark {
        try await database.write { [queue] db in
            guard var order = try Self.order(db, id: orderID) else { return .notFound }
            guard !order.status.isTerminal else { return .finished(order) }
            if verifying {
                let there = if let deadLetter = queue.deadLetter {
                    try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM \(deadLetter.table) WHERE message_id = ?)"),
                                      arguments: [messageID]) ?? false
                } else { false }
                guard there else { return .notDeadLettered(order) }
            }
            guard order.deadLetteredAt == nil else { return .marked(order) }
            let now = self.database.time.nowMillis()
            try db.execute(sql: "UPDATE fs_orders SET dead_lettered_at = ? WHERE order_id = ?", arguments: [now, orderID])
            order.deadLetteredAt = now
            try Self.record(OrderEvent(orderID: orderID, at: now, kind: .deadLettered,
                                       detail: "its message \(messageID) was dead-lettered after \(order.attempts) attempts", actor: actor), db)
            return .marked(order)
        }
    }

    public func redrive(_ messageIDs: [String], by actor: String) async throws -> [RedriveOutcome] {
        guard let deadLetter = queue.deadLetter, !messageIDs.isEmpty else { return messageIDs.map { _ in .notFound } }
        return try await database.write { [queue, writer] db in
            let now = self.database.time.nowMillis()
            var outcomes: [RedriveOutcome] = []
            var moved = false
            for id in messageIDs {
                // (The dead-letter table is indexed by message id: see init.)
                guard let row = try Row.fetchOne(db, sql: "SELECT seq, body FROM \(deadLetter.table) WHERE message_id = ?", arguments: [id]),
                      let orderID = PaymentMessage.orderID(in: row["body"]), let order = try Self.order(db, id: orderID) else {
                    outcomes.append(.notFound)
                    continue
                }
                guard let next = order.redriven(now: now) else {
                    outcomes.append(.orderFinal(order))
                    continue
                }
                // Back with the id the order names, sent now (a new retention period, as SQS's
                // move gives), visible now, no deliveries counted.
                try db.execute(sql: "INSERT INTO \(queue.record.table) (message_id, body, sent_at, visible_at) VALUES (?, ?, ?, ?)",
                               arguments: [id, row["body"] as String, now, now])
                let seq = db.lastInsertedRowID
                try db.execute(sql: "DELETE FROM \(deadLetter.table) WHERE seq = ?", arguments: [row["seq"] as Int64])
                try Self.store(next, from: order.status, db, writer)
                try db.execute(sql: "UPDATE fs_orders SET message_seq = ?, dead_lettered_at = NULL WHERE order_id = ?", arguments: [seq, orderID])
                try Self.record(OrderEvent(orderID: orderID, at: now, kind: .redriven,
                                           detail: "its message \(id) was sent back from the dead-letter queue after \(order.attempts) attempts",
                                           actor: actor), db)
                outcomes.append(.redriven(next))
                moved = true
            }
            if moved { writer.touch(queue.record.id) }
            return outcomes
        }
    }

    // MARK: History

    public func record(_ events: [OrderEvent]) async throws {
        guard !events.isEmpty else { return }
        try await database.write { db in
            for event in events { try Self.record(event, db) }
        }
    }

    private static func record(_ event: OrderEvent, _ db: Database) throws {
        try db.cachedStatement(sql: """
            INSERT INTO fs_order_events (order_id, at, kind, detail, actor) SELECT ?, ?, ?, ?, ?
            WHERE NOT EXISTS (SELECT 1 FROM fs_order_events WHERE order_id = ? AND kind = ? AND detail = ?)
            """).execute(arguments: [event.orderID, event.at, event.kind.rawValue, event.detail, event.actor,
                                     event.orderID, event.kind.rawValue, event.detail])
    }

    public func events(of orderID: String, limit: Int) async throws -> [OrderEvent] {
        try await database.read { db in
            // The newest `limit`, oldest first.
            try Row.fetchAll(db.cachedStatement(sql: """
                SELECT at, kind, detail, actor FROM fs_order_events WHERE order_id = ? ORDER BY seq DESC LIMIT ?
                """), arguments: [orderID, limit]).reversed().compactMap { row in
                // A kind a later version wrote is left out, not mislabelled.
                OrderEvent.Kind(rawValue: row["kind"]).map { OrderEvent(orderID: orderID, at: row["at"], kind: $0, detail: row["detail"], actor: row["actor"]) }
            }
        }
    }

    public func settlementCounts() async throws -> SettlementCounts {
        try await database.read { db in
            let values = try SQLiteSchema.counters(db)
            return SettlementCounts(completed: values[Self.settledCompleted] ?? 0, failed: values[Self.settledFailed] ?? 0)
        }
    }

    static let settledCompleted = "reconciler.completed"
    static let settledFailed = "reconciler.failed"

    /// Orders stored before schema v2 know their message by id only: find its row once. The
    /// queue table has no index on `message_id` (sends would pay for it), so a temporary one
    /// makes this one pass instead of a scan of the queue per open order.
    private static func backfillMessageRows(_ database: SQLiteDatabase, queue: SQLiteMessageQueue) async throws {
        let needed = try await database.read { db in
            try Bool.fetchOne(db, sql: """
                SELECT EXISTS (SELECT 1 FROM fs_orders INDEXED BY fs_orders_open
                               WHERE status IN ('pending', 'processing') AND message_seq IS NULL AND message_id IS NOT NULL)
                """) ?? false
        }
        guard needed else { return }
        let table = queue.record.table
        try await database.write { db in
            try db.execute(sql: """
                CREATE INDEX IF NOT EXISTS \(table)_backfill ON \(table)(message_id);
                UPDATE fs_orders SET message_seq = (SELECT q.seq FROM \(table) q WHERE q.message_id = fs_orders.message_id)
                WHERE seq IN (SELECT seq FROM fs_orders INDEXED BY fs_orders_open
                              WHERE status IN ('pending', 'processing') AND message_seq IS NULL AND message_id IS NOT NULL);
                DROP INDEX \(table)_backfill;
                """)
        }
    }

    // MARK: Rows

    static func decodeOrder(_ row: Row) -> Order {
        Order(
            id: row["order_id"], customerID: row["customer_id"], items: OrderItem.decodeList(row["items"]), total: row["total"],
            status: OrderStatus(rawValue: row["status"]) ?? .pending,
            channel: OrderChannel(rawValue: row["channel"]) ?? .async,
            attempts: row["attempts"], failureReason: row["failure_reason"],
            createdAt: row["created_at"], updatedAt: row["updated_at"],
            processingAt: row["processing_at"], finishedAt: row["finished_at"], messageID: row["message_id"],
            deadLetteredAt: row["dead_lettered_at"])
    }
}

extension SQLiteOrderStore: Catalog {
    public func product(id: String) async throws -> Product? {
        try await database.read { db in try SQLiteInventory.product(db, id: id) }
    }

    public func products(limit: Int) async throws -> [Product] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM fs_products ORDER BY product_id LIMIT ?", arguments: [limit]).map(SQLiteInventory.product(row:))
        }
    }

    public func putProduct(id: String, stock: Int, perCustomerLimit: Int?, price: Double?) async throws -> Product {
        try await database.write { db in
            try db.execute(sql: """
                INSERT INTO fs_products (product_id, stock, per_customer_limit, price, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                ON CONFLICT(product_id) DO UPDATE SET stock = ?2, per_customer_limit = ?3, price = ?4, updated_at = ?5
                """, arguments: [id, stock, perCustomerLimit, price, self.database.time.nowMillis()])
            return try SQLiteInventory.product(db, id: id)!
        }
    }

    public func setStock(id: String, stock: Int) async throws -> Product {
        try await database.write { db in
            try db.execute(sql: """
                INSERT INTO fs_products (product_id, stock, updated_at) VALUES (?1, ?2, ?3)
                ON CONFLICT(product_id) DO UPDATE SET stock = ?2, updated_at = ?3
                """, arguments: [id, stock, self.database.time.nowMillis()])
            return try SQLiteInventory.product(db, id: id)!
        }
    }
}
