import FlashCore
import FlashOrders
import FlashQueue
import GRDB
import Synchronization

/// Orders, stock and payment messages in the embedded database.
///
/// Placing a queued order is one transaction: the order row, its stock reservation and its
/// message on the `orders` topic commit together (group-committed with concurrent orders). The
/// order keeps the row of its message in the payments queue, so the reconciler can tell with
/// one primary-key look-up whether anything will still deliver it.
/// Counts by status are kept in memory (counted once at open) so `/stats` costs no table scan;
/// the SQLite backend has one process per file, so they are exact. Valid while its
/// ``SQLiteDatabase`` is alive (it refers to it without owning it, as queues do).
public final class SQLiteOrderStore: OrderStore {
    unowned(unsafe) let database: SQLiteDatabase
    let topic: SQLiteTopic
    let paymentsQueue: SQLiteMessageQueue?
    /// Refuse items whose product is not in the catalog.
    public let strictCatalog: Bool
    private let tally: Mutex<OrderCounts>

    /// - Parameters:
    ///   - topic: where queued orders' payment messages are published.
    ///   - paymentsQueue: the queue the workers read, for queue-position estimates.
    public init(database: SQLiteDatabase, topic: SQLiteTopic, paymentsQueue: SQLiteMessageQueue?, strictCatalog: Bool = false) async throws {
        self.database = database
        self.topic = topic
        self.paymentsQueue = paymentsQueue
        self.strictCatalog = strictCatalog
        if let paymentsQueue { try await Self.backfillMessageRows(database, queue: paymentsQueue) }
        let counts = try await database.read { db -> OrderCounts in
            var counts = OrderCounts()
            for row in try Row.fetchAll(db, sql: "SELECT status, COUNT(*) FROM fs_orders GROUP BY status") {
                if let status = OrderStatus(rawValue: row[0]) { counts[status] = row[1] }
            }
            return counts
        }
        tally = Mutex(counts)
    }

    // MARK: Placing

    public func placeQueued(_ order: NewOrder) async throws -> Placement {
        try await place(order, status: .pending, holdUntil: nil)
    }

    public func placeImmediate(_ order: NewOrder, holdUntil: Int64) async throws -> Placement {
        try await place(order, status: .processing, holdUntil: holdUntil)
    }

    private func place(_ order: NewOrder, status: OrderStatus, holdUntil: Int64?) async throws -> Placement {
        let strict = strictCatalog
        let paymentsQueueID = paymentsQueue?.record.id
        let placement = try await database.write { [topic] db -> Placement in
            if let existing = try Self.existing(db, order: order) { return Placement(order: existing, messageID: existing.messageID, created: false) }
            // Only a request that can be repeated keeps its fingerprint (none is built on the common
            // path); it is taken from the items as sent, before catalog prices fill in.
            let fingerprint = order.idempotencyKey != nil || order.idChosenByClient ? order.fingerprint : nil
            let reservation = try SQLiteInventory.reserve(db, items: order.items, customerID: order.customerID,
                                                          strictCatalog: strict || order.requiresCatalog)
            // A catalog price is the price: the client's only fills in where the catalog has none.
            var order = order
            for index in order.items.indices {
                if let price = reservation.prices[order.items[index].productID] { order.items[index].price = price }
            }
            let now = WallClock.nowMillis()
            let total = order.total
            var messageID: String?
            var messageSeq: Int64?
            if status == .pending {
                let body = PaymentMessage(orderID: order.id, customerID: order.customerID, total: total).body
                // The message shares the order's timestamp: queue positions compare the two.
                (messageID, messageSeq) = try topic.publish(body, at: now, in: db, rowIn: paymentsQueueID)
            }
            try db.cachedStatement(sql: """
                INSERT INTO fs_orders (order_id, idempotency_key, customer_id, items, total, status, channel, attempts,
                                       reserved, message_id, created_at, updated_at, processing_at,
                                       message_seq, hold_until, request_fingerprint)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: [
                    order.id, order.idempotencyKey, order.customerID, Self.encodeItems(order.items), total,
                    status.rawValue, order.channel.rawValue, status == .processing ? 1 : 0,
                    SQLiteInventory.encode(reservation.units), messageID, now, now, status == .processing ? now : nil,
                    messageSeq, holdUntil, fingerprint,
                ])
            let stored = Order(
                id: order.id, customerID: order.customerID, items: order.items, total: total, status: status,
                channel: order.channel, attempts: status == .processing ? 1 : 0, failureReason: nil,
                createdAt: now, updatedAt: now, processingAt: status == .processing ? now : nil, finishedAt: nil,
                messageID: messageID)
            return Placement(order: stored, messageID: messageID, created: true)
        }
        if placement.created { tally.withLock { $0[status] += 1 } }
        return placement
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
        try await database.read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM fs_orders WHERE order_id = ?"), arguments: [id]).map(Self.decodeOrder)
        }
    }

    public func counts() async throws -> OrderCounts {
        tally.withLock { $0 }
    }

    public func queuePosition(of order: Order) async throws -> Int? {
        guard order.status == .pending, let queue = paymentsQueue else { return nil }
        return try await queue.countVisible(sentAtOrBefore: order.createdAt)
    }

    // MARK: Processing

    public func startProcessing(_ orderIDs: [String]) async throws -> [String: Order] {
        let (orders, started) = try await database.write { db -> ([String: Order], Int) in
            let now = WallClock.nowMillis()
            var orders: [String: Order] = [:]
            var started = 0
            let select = try db.cachedStatement(sql: "SELECT * FROM fs_orders WHERE order_id = ?")
            let update = try db.cachedStatement(sql: """
                UPDATE fs_orders SET status = 'processing', attempts = attempts + 1, updated_at = ?1,
                                     processing_at = COALESCE(processing_at, ?1)
                WHERE order_id = ?2
                """)
            for id in orderIDs {
                guard let row = try Row.fetchOne(select, arguments: [id]) else { continue }
                var order = Self.decodeOrder(row)
                if !order.status.isTerminal {
                    try update.execute(arguments: [now, id])
                    if order.status == .pending { started += 1 }
                    order.status = .processing
                    order.attempts += 1
                    order.updatedAt = now
                    order.processingAt = order.processingAt ?? now
                }
                orders[id] = order
            }
            return (orders, started)
        }
        if started > 0 {
            tally.withLock {
                $0.pending -= started
                $0.processing += started
            }
        }
        return orders
    }

    public func returnUntried(_ orderIDs: [String]) async throws {
        guard !orderIDs.isEmpty else { return }
        let repended = try await database.write { db in try Self.returnUntried(orderIDs, db) }
        tallyRepended(repended)
    }

    /// Reverts one attempt of each order (see ``OrderStore/returnUntried(_:)``); returns how many
    /// went back to pending.
    private static func returnUntried(_ orderIDs: [String], _ db: Database) throws -> Int {
        let select = try db.cachedStatement(sql: "SELECT status, attempts FROM fs_orders WHERE order_id = ?")
        let update = try db.cachedStatement(sql: """
            UPDATE fs_orders
            SET attempts = attempts - 1, updated_at = ?1,
                status = CASE WHEN attempts <= 1 THEN 'pending' ELSE status END,
                processing_at = CASE WHEN attempts <= 1 THEN NULL ELSE processing_at END
            WHERE order_id = ?2 AND status = 'processing' AND attempts > 0
            """)
        let now = WallClock.nowMillis()
        var repended = 0
        for id in orderIDs {
            guard let row = try Row.fetchOne(select, arguments: [id]), row[0] as String == OrderStatus.processing.rawValue else { continue }
            let attempts: Int = row[1]
            try update.execute(arguments: [now, id])
            if attempts == 1, db.changesCount == 1 { repended += 1 }
        }
        return repended
    }

    private func tallyRepended(_ count: Int) {
        guard count > 0 else { return }
        tally.withLock {
            $0.processing -= count
            $0.pending += count
        }
    }

    @discardableResult
    public func finish(_ orderID: String, result: OrderResult) async throws -> Order? {
        try await finish(orderID, result: result, deletingFrom: nil, counted: false)?.order
    }

    public func settle(_ orderID: String, result: OrderResult, counted: Bool) async throws -> FinishedOrder? {
        try await finish(orderID, result: result, deletingFrom: nil, counted: counted)
    }

    private func finish(_ orderID: String, result: OrderResult, deletingFrom delivery: (SQLiteMessageQueue, ReceiptHandle)?,
                        counted: Bool) async throws -> FinishedOrder? {
        let (order, previous) = try await database.write { db -> (Order?, OrderStatus?) in
            if let (queue, receipt) = delivery {
                do {
                    try queue.delete(receipt, in: db)
                } catch QueueError.receiptHandleInvalid {
                    // Stale: redelivered to someone else, or purged. The result stands all the same.
                }
            }
            guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM fs_orders WHERE order_id = ?"), arguments: [orderID]) else {
                return (nil, nil)
            }
            var order = Self.decodeOrder(row)
            guard !order.status.isTerminal else { return (order, nil) }
            let previous = order.status
            let now = WallClock.nowMillis()
            switch result {
            case .completed:
                order.status = .completed
            case let .failed(reason):
                order.status = .failed
                order.failureReason = reason
            }
            order.updatedAt = now
            order.finishedAt = now
            try db.cachedStatement(sql: """
                UPDATE fs_orders SET status = ?, failure_reason = ?, updated_at = ?, finished_at = ? WHERE order_id = ?
                """).execute(arguments: [order.status.rawValue, order.failureReason, now, now, orderID])
            let reservation = SQLiteInventory.decode(row["reserved"])
            if !reservation.isEmpty {
                try SQLiteInventory.settle(db, reservation: reservation, customerID: order.customerID, sold: order.status == .completed)
            }
            if counted {
                try Self.addToCounter(db, order.status == .completed ? Self.settledCompleted : Self.settledFailed, 1)
            }
            return (order, previous)
        }
        if let previous, let order {
            tally.withLock {
                $0[previous] -= 1
                $0[order.status] += 1
            }
        }
        return order.map { FinishedOrder(order: $0, changed: previous != nil) }
    }

    // MARK: Reconciling

    public func orphans(after cursor: Int64, limit: Int) async throws -> OrphanScan {
        guard let queue = paymentsQueue else { return OrphanScan(orphans: [], nextCursor: nil) }
        return try await database.read { db in
            // The partial index holds only open orders, so a page costs its own rows, however
            // many orders have finished. Sync orders have no message: ``expiredHolds`` finds them.
            let rows = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT seq, order_id, channel, message_seq, message_id FROM fs_orders INDEXED BY fs_orders_open
                WHERE status IN ('pending', 'processing') AND seq > ? ORDER BY seq LIMIT ?
                """), arguments: [cursor, limit])
            var orphans: [Orphan] = []
            for row in rows where row["channel"] as String != OrderChannel.sync.rawValue {
                let seq: Int64? = row["message_seq"]
                let messageID: String? = row["message_id"]
                let live = if let seq, let messageID { try queue.contains(seq: seq, messageID: messageID, in: db) } else { false }
                if !live { orphans.append(Orphan(orderID: row["order_id"], reason: .messageGone)) }
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

    public func settlementCounts() async throws -> SettlementCounts {
        try await database.read { db in
            let values = try Dictionary(uniqueKeysWithValues: Row.fetchAll(db, sql: "SELECT name, value FROM fs_counters").map { ($0[0] as String, $0[1] as Int) })
            return SettlementCounts(completed: values[Self.settledCompleted] ?? 0, failed: values[Self.settledFailed] ?? 0)
        }
    }

    static let settledCompleted = "reconciler.completed"
    static let settledFailed = "reconciler.failed"

    static func addToCounter(_ db: Database, _ name: String, _ amount: Int) throws {
        try db.cachedStatement(sql: """
            INSERT INTO fs_counters (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = value + ?2
            """).execute(arguments: [name, amount])
    }

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

    static func encodeItems(_ items: [OrderItem]) -> String {
        "[" + items.map { item in
            var text = #"{"product_id":\#(JSONText.quoted(item.productID)),"quantity":\#(item.quantity)"#
            if let price = item.price { text += #","price":\#(JSONText.number(price))"# }
            return text + "}"
        }.joined(separator: ",") + "]"
    }

    static func decodeItems(_ text: String) -> [OrderItem] {
        guard case let .array(list)? = try? JSONValue.parse(Array(text.utf8)) else { return [] }
        return list.compactMap { value in
            guard let object = value.object, case let .string(product)? = object["product_id"],
                  case let .number(_, quantity?)? = object["quantity"] else { return nil }
            var price: Double?
            if case let .number(value, _)? = object["price"] { price = value }
            return OrderItem(productID: product, quantity: Int(quantity), price: price)
        }
    }

    static func decodeOrder(_ row: Row) -> Order {
        Order(
            id: row["order_id"], customerID: row["customer_id"], items: decodeItems(row["items"]), total: row["total"],
            status: OrderStatus(rawValue: row["status"]) ?? .pending,
            channel: OrderChannel(rawValue: row["channel"]) ?? .async,
            attempts: row["attempts"], failureReason: row["failure_reason"],
            createdAt: row["created_at"], updatedAt: row["updated_at"],
            processingAt: row["processing_at"], finishedAt: row["finished_at"], messageID: row["message_id"])
    }
}

extension SQLiteOrderStore: QueueAcknowledgingOrderStore {
    public func acknowledges(queueName: String) -> Bool {
        paymentsQueue?.name == queueName
    }

    @discardableResult
    public func finish(_ orderID: String, result: OrderResult, deleting receipt: ReceiptHandle) async throws -> Order? {
        guard let queue = paymentsQueue else { throw QueueError.receiptHandleInvalid(receipt.rawValue) }
        return try await finish(orderID, result: result, deletingFrom: (queue, receipt), counted: false)?.order
    }

    public func returnUntried(_ deliveries: [UntriedDelivery]) async throws {
        guard !deliveries.isEmpty else { return }
        guard let queue = paymentsQueue else { throw QueueError.receiptHandleInvalid(deliveries[0].receipt.rawValue) }
        let repended = try await database.write { db -> Int in
            let current = try queue.returnUntried(deliveries.map(\.receipt), in: db)
            let orderIDs = zip(deliveries, current).compactMap { $1 ? $0.orderID : nil }
            return try Self.returnUntried(orderIDs, db)
        }
        tallyRepended(repended)
    }
}

extension SQLiteOrderStore: Catalog {
    public func product(id: String) async throws -> Product? {
        try await database.read { db in try SQLiteInventory.product(db, id: id) }
    }

    public func putProduct(id: String, stock: Int, perCustomerLimit: Int?, price: Double?) async throws -> Product {
        try await database.write { db in
            try db.execute(sql: """
                INSERT INTO fs_products (product_id, stock, per_customer_limit, price, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                ON CONFLICT(product_id) DO UPDATE SET stock = ?2, per_customer_limit = ?3, price = ?4, updated_at = ?5
                """, arguments: [id, stock, perCustomerLimit, price, WallClock.nowMillis()])
            return try SQLiteInventory.product(db, id: id)!
        }
    }

    public func setStock(id: String, stock: Int) async throws -> Product {
        try await database.write { db in
            try db.execute(sql: """
                INSERT INTO fs_products (product_id, stock, updated_at) VALUES (?1, ?2, ?3)
                ON CONFLICT(product_id) DO UPDATE SET stock = ?2, updated_at = ?3
                """, arguments: [id, stock, WallClock.nowMillis()])
            return try SQLiteInventory.product(db, id: id)!
        }
    }
}
