import FlashCore
import FlashOrders
import FlashQueue
import PostgresNIO

/// Orders, stock and payment messages in PostgreSQL: ``OrderStore``'s primitives with the core's
/// rules, for any number of API and worker processes on one database.
///
/// Placing goes through a ``PlacementBatcher`` (one transaction per group of orders: the hot
/// product row is locked once per group). Every other step is one transaction that locks the
/// order rows it changes (`FOR UPDATE`), so two workers finishing one order cannot both apply
/// it: the second finds it finished. Order rows, product rows and counters are always locked in
/// that order, products and counters sorted, so transactions cannot deadlock one another.
public final class PostgresOrderStore: OrderStore {
    let database: PostgresDatabase
    let queue: PostgresMessageQueue
    let batcher: PlacementBatcher
    public let strictCatalog: Bool

    init(database: PostgresDatabase, topic: PostgresTopic, paymentsQueue: PostgresMessageQueue, strictCatalog: Bool) {
        self.database = database
        self.queue = paymentsQueue
        self.strictCatalog = strictCatalog
        self.batcher = PlacementBatcher(database: database, topicID: topic.id, paymentsQueueID: paymentsQueue.record.id,
                                        strictCatalog: strictCatalog)
    }

    public var paymentsQueue: any MessageQueue { queue }
    public var admissionLine: AdmissionLine? { batcher.line }

    static let columns = """
        order_id, idempotency_key, customer_id, items, total, status, channel, attempts, failure_reason, reserved, \
        message_id, created_at, updated_at, processing_at, finished_at, dead_lettered_at
        """

    // MARK: Placing

    public func placeQueued(_ order: NewOrder) async throws -> Placement {
        try await batcher.place(order, queued: true, holdUntil: nil)
    }

    public func placeImmediate(_ order: NewOrder, holdUntil: Int64) async throws -> Placement {
        try await batcher.place(order, queued: false, holdUntil: holdUntil)
    }

    // MARK: Reading

    public func order(id: String) async throws -> Order? {
        try await database.read("SELECT \(unescaped: Self.columns) FROM fs_orders WHERE order_id = \(id)")
            .first.map { try Self.decodeOrder($0.makeRandomAccess()) }
    }

    public func orders(status: OrderStatus?, before cursor: Int64?, limit: Int) async throws -> OrderPage {
        // Down `seq` from the cursor: open orders through the partial index of open ones,
        // finished ones from the newest, which a console looks at.
        let below = cursor ?? Int64.max
        let rows = if let status {
            try await database.read("SELECT \(unescaped: Self.columns), seq FROM fs_orders WHERE seq < \(below) AND status = \(status.rawValue) ORDER BY seq DESC LIMIT \(limit + 1)")
        } else {
            try await database.read("SELECT \(unescaped: Self.columns), seq FROM fs_orders WHERE seq < \(below) ORDER BY seq DESC LIMIT \(limit + 1)")
        }
        return OrderPage(rows: try rows.map { row in
            let columns = row.makeRandomAccess()
            return (try Self.decodeOrder(columns), try columns.get("seq") as Int64)
        }, limit: limit)
    }

    public func counts() async throws -> OrderCounts {
        let counters = try await CounterDeltas.read(database, prefix: "orders.")
        return OrderCounts(counters: counters, placed: counters["orders.placed"] ?? 0)
    }

    public func settlementCounts() async throws -> SettlementCounts {
        let counters = try await CounterDeltas.read(database, prefix: "reconciler.")
        return SettlementCounts(completed: counters[Self.settledCompleted] ?? 0, failed: counters[Self.settledFailed] ?? 0)
    }

    static let settledCompleted = "reconciler.completed"
    static let settledFailed = "reconciler.failed"

    // MARK: Processing

    /// The orders with these ids, locked until the transaction ends.
    private func lockOrders(_ ids: [String], on connection: PostgresConnection) async throws -> [String: (order: Order, reserved: String?)] {
        var found: [String: (Order, String?)] = [:]
        for row in try await connection.query("""
            SELECT \(unescaped: Self.columns) FROM fs_orders WHERE order_id = ANY(\(ids)::text[]) ORDER BY order_id FOR UPDATE
            """, logger: database.logger).collect() {
            let columns = row.makeRandomAccess()
            let order = try Self.decodeOrder(columns)
            found[order.id] = (order, try columns.get("reserved", as: String?.self))
        }
        return found
    }

    /// Stores orders' new states (each one of the core's transitions) and collects the status
    /// counters' changes (pending has none: it is placed minus the others).
    private func store(_ changes: [(next: Order, previous: OrderStatus)], counters: inout CounterDeltas, on connection: PostgresConnection) async throws {
        guard !changes.isEmpty else { return }
        let orders = changes.map(\.next)
        try await connection.query("""
            UPDATE fs_orders o SET status = x.status, attempts = x.attempts, failure_reason = NULLIF(x.reason, ''), updated_at = x.updated_at,
                                   processing_at = NULLIF(x.processing_at, -1), finished_at = NULLIF(x.finished_at, -1)
            FROM unnest(\(orders.map(\.id))::text[], \(orders.map(\.status.rawValue))::text[], \(orders.map { Int64($0.attempts) })::bigint[],
                        \(orders.map { $0.failureReason ?? "" })::text[], \(orders.map(\.updatedAt))::bigint[],
                        \(orders.map { $0.processingAt ?? -1 })::bigint[], \(orders.map { $0.finishedAt ?? -1 })::bigint[])
                 AS x(order_id, status, attempts, reason, updated_at, processing_at, finished_at)
            WHERE o.order_id = x.order_id
            """, logger: database.logger)
        for (next, previous) in changes where next.status != previous {
            if previous != .pending { counters.add(OrderCounts.counterName(previous), -1) }
            if next.status != .pending { counters.add(OrderCounts.counterName(next.status), 1) }
        }
    }

    public func startProcessing(_ orderIDs: [String]) async throws -> [String: Order] {
        guard !orderIDs.isEmpty else { return [:] }
        return try await database.transaction { [self] connection in
            let now = self.database.time.nowMillis()
            var orders: [String: Order] = [:]
            var changes: [(Order, OrderStatus)] = []
            for (id, found) in try await lockOrders(orderIDs, on: connection) {
                if let next = found.order.startingAttempt(now: now) {
                    changes.append((next, found.order.status))
                    orders[id] = next
                } else {
                    orders[id] = found.order
                }
            }
            var counters = CounterDeltas()
            try await store(changes, counters: &counters, on: connection)
            try await counters.write(on: connection, logger: database.logger)
            return orders
        }
    }

    public func returnUntried(_ deliveries: [UntriedDelivery]) async throws {
        guard !deliveries.isEmpty else { return }
        try await database.transaction { [self] connection in
            let current = try await queue.returnUntried(deliveries.map(\.receipt), on: connection)
            // A stale receipt's message was delivered again meanwhile: the attempt on the order is that delivery's.
            let ids = zip(deliveries, current).compactMap { delivery, isCurrent in isCurrent ? delivery.orderID : nil }
            try await returnAttempts(ids, on: connection)
        }
        database.touched([queue.record.id])
    }

    public func returnAttempts(_ orderIDs: [String]) async throws {
        guard !orderIDs.isEmpty else { return }
        try await database.transaction { [self] connection in try await returnAttempts(orderIDs, on: connection) }
    }

    private func returnAttempts(_ ids: [String], on connection: PostgresConnection) async throws {
        guard !ids.isEmpty else { return }
        let now = self.database.time.nowMillis()
        var changes: [(Order, OrderStatus)] = []
        let found = try await lockOrders(ids, on: connection)
        for id in ids {
            guard let order = found[id]?.order, let returned = order.returningUntried(now: now) else { continue }
            changes.append((returned, order.status))
        }
        var counters = CounterDeltas()
        try await store(changes, counters: &counters, on: connection)
        try await counters.write(on: connection, logger: database.logger)
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
        try await database.transaction { [self] connection -> FinishedOrder? in
            // A stale receipt deletes nothing: redelivered to someone else, or purged. The result stands all the same.
            if let receipt { _ = try await queue.delete([receipt], on: connection) }
            guard let found = try await lockOrders([orderID], on: connection)[orderID] else { return nil }
            guard let finished = found.order.finishing(result, now: self.database.time.nowMillis()) else {
                return FinishedOrder(order: found.order, changed: false)
            }
            var counters = CounterDeltas()
            try await store([(finished, found.order.status)], counters: &counters, on: connection)
            let reservation = Reservation(encoded: found.reserved)
            if !reservation.isEmpty {
                try await close(reservation, customerID: found.order.customerID, sold: finished.status == .completed, on: connection)
            }
            if counted { counters.add(finished.status == .completed ? Self.settledCompleted : Self.settledFailed, 1) }
            try await counters.write(on: connection, logger: database.logger)
            if let event { try await record([event], on: connection) }
            return FinishedOrder(order: finished, changed: true)
        }
    }

    /// Applies ``InventoryRules/closing(_:sold:)`` (products in the reservation's sorted order).
    private func close(_ reservation: Reservation, customerID: String, sold: Bool, on connection: PostgresConnection) async throws {
        let changes = InventoryRules.closing(reservation, sold: sold)
        try await connection.query("""
            UPDATE fs_products p SET stock = p.stock + c.stock, reserved = p.reserved + c.reserved, sold = p.sold + c.sold
            FROM unnest(\(changes.map(\.productID))::text[], \(changes.map { Int64($0.stock) })::bigint[],
                        \(changes.map { Int64($0.reserved) })::bigint[], \(changes.map { Int64($0.sold) })::bigint[]) AS c(product_id, stock, reserved, sold)
            WHERE p.product_id = c.product_id
            """, logger: database.logger)
        let returned = changes.filter { $0.customerBought != 0 }
        guard !returned.isEmpty else { return }
        try await connection.query("""
            UPDATE fs_customer_purchases p SET quantity = GREATEST(0, p.quantity + c.bought)
            FROM unnest(\(returned.map(\.productID))::text[], \(returned.map { Int64($0.customerBought) })::bigint[]) AS c(product_id, bought)
            WHERE p.product_id = c.product_id AND p.customer_id = \(customerID)
            """, logger: database.logger)
    }

    // MARK: Reconciling

    // MARK: Dead letters

    public func deadLetters(limit: Int, openOnly: Bool) async throws -> [DeadLetter] {
        guard let deadLetter = queue.deadLetter else { return [] }
        // Oldest first, a page at a time; with `openOnly`, until `limit` open ones are found (an
        // admin read: it costs the dead letters it passes, settled ones included).
        var letters: [DeadLetter] = []
        var after: Int64 = 0
        while letters.count < limit {
            let rows = try await database.read("""
                SELECT message_id, body, sent_at, visible_at, receive_count, seq FROM fs_messages
                WHERE queue_id = \(deadLetter.id) AND seq > \(after) ORDER BY seq LIMIT \(openOnly ? 1_000 : limit)
                """)
            for letter in try await withOrders(rows) where !openOnly || letter.order.map({ !$0.status.isTerminal }) == true {
                letters.append(letter)
                if letters.count == limit { break }
            }
            guard openOnly, let last = rows.last else { break }
            after = try last.makeRandomAccess().get(5)
        }
        return letters
    }

    public func deadLetter(messageID: String) async throws -> DeadLetter? {
        guard let deadLetter = queue.deadLetter else { return nil }
        return try await withOrders(try await database.read("""
            SELECT message_id, body, sent_at, visible_at, receive_count FROM fs_messages
            WHERE queue_id = \(deadLetter.id) AND message_id = \(messageID)
            """)).first
    }

    /// Dead letters from rows of (message_id, body, sent_at, visible_at, receive_count, …), with
    /// their orders read in one query.
    private func withOrders(_ rows: [PostgresRow]) async throws -> [DeadLetter] {
        var letters: [DeadLetter] = []
        for row in rows {
            let columns = row.makeRandomAccess()
            letters.append(DeadLetter(messageID: try columns.get(0), orderID: PaymentMessage.orderID(in: try columns.get(1)),
                                      receiveCount: Int(try columns.get(4, as: Int32.self)), sentAt: try columns.get(2),
                                      hiddenUntil: try columns.get(3), order: nil))
        }
        let ids = letters.compactMap(\.orderID)
        guard !ids.isEmpty else { return letters }
        var orders: [String: Order] = [:]
        for row in try await database.read("SELECT \(unescaped: Self.columns) FROM fs_orders WHERE order_id = ANY(\(ids)::text[])") {
            let order = try Self.decodeOrder(row.makeRandomAccess())
            orders[order.id] = order
        }
        for index in letters.indices { letters[index].order = letters[index].orderID.flatMap { orders[$0] } }
        return letters
    }

    public func markDeadLettered(_ orderID: String, messageID: String, verifying: Bool, by actor: String) async throws -> DeadLetterMark {
        try await database.transaction { [self] connection -> DeadLetterMark in
            guard var order = try await lockOrders([orderID], on: connection)[orderID]?.order else { return .notFound }
            guard !order.status.isTerminal else { return .finished(order) }
            if verifying {
                // A dead-lettered message keeps its row, which the order names.
                let there = try await connection.query("""
                    SELECT 1 FROM fs_orders o JOIN fs_messages m ON m.seq = o.message_seq
                    WHERE o.order_id = \(orderID) AND m.message_id = \(messageID) AND m.queue_id = \(queue.deadLetter?.id ?? -1)
                    """, logger: database.logger).collect().count > 0
                guard there else { return .notDeadLettered(order) }
            }
            guard order.deadLetteredAt == nil else { return .marked(order) }
            let now = database.time.nowMillis()
            try await connection.query("UPDATE fs_orders SET dead_lettered_at = \(now) WHERE order_id = \(orderID)", logger: database.logger)
            order.deadLetteredAt = now
            try await record([OrderEvent(orderID: orderID, at: now, kind: .deadLettered,
                                         detail: "its message \(messageID) was dead-lettered after \(order.attempts) attempts", actor: actor)],
                             on: connection)
            return .marked(order)
        }
    }

    public func redrive(_ messageIDs: [String], by actor: String) async throws -> [RedriveOutcome] {
        guard let deadLetter = queue.deadLetter, !messageIDs.isEmpty else { return messageIDs.map { _ in .notFound } }
        let outcomes = try await database.transaction { [self] connection -> [RedriveOutcome] in
            let now = self.database.time.nowMillis()
            var messages: [String: (seq: Int64, orderID: String)] = [:]
            for row in try await connection.query("""
                SELECT seq, message_id, body FROM fs_messages
                WHERE queue_id = \(deadLetter.id) AND message_id = ANY(\(messageIDs)::text[]) ORDER BY seq FOR UPDATE
                """, logger: database.logger).collect() {
                let columns = row.makeRandomAccess()
                if let orderID = PaymentMessage.orderID(in: try columns.get(2)) {
                    messages[try columns.get(1)] = (try columns.get(0), orderID)
                }
            }
            let orders = try await lockOrders(messages.values.map(\.orderID), on: connection)
            var outcomes: [RedriveOutcome] = []
            var changes: [(Order, OrderStatus)] = []
            var moved: [Int64] = []
            var events: [OrderEvent] = []
            for id in messageIDs {
                guard let message = messages.removeValue(forKey: id), let order = orders[message.orderID]?.order else {
                    outcomes.append(.notFound)
                    continue
                }
                guard let next = order.redriven(now: now) else {
                    outcomes.append(.orderFinal(order))
                    continue
                }
                changes.append((next, order.status))
                moved.append(message.seq)
                events.append(OrderEvent(orderID: order.id, at: now, kind: .redriven,
                                         detail: "its message \(id) was sent back from the dead-letter queue after \(order.attempts) attempts",
                                         actor: actor))
                outcomes.append(.redriven(next))
            }
            // The same row goes back (dead-lettering moved it here): the order's message_seq and
            // message_id name it still. Sent now (a new retention period, as SQS's move gives),
            // visible now, no deliveries counted.
            if !moved.isEmpty {
                try await connection.query("""
                    UPDATE fs_messages SET queue_id = \(queue.record.id), sent_at = \(now), visible_at = \(now), receive_count = 0,
                                           receipt = 0, first_received_at = 0
                    WHERE seq = ANY(\(moved)::bigint[]) AND queue_id = \(deadLetter.id)
                    """, logger: database.logger)
                try await connection.query("UPDATE fs_orders SET dead_lettered_at = NULL WHERE order_id = ANY(\(changes.map(\.0.id))::text[])",
                                           logger: database.logger)
            }
            var counters = CounterDeltas()
            try await store(changes, counters: &counters, on: connection)
            try await counters.write(on: connection, logger: database.logger)
            try await record(events, on: connection)
            return outcomes
        }
        if outcomes.contains(where: { if case .redriven = $0 { true } else { false } }) { database.touched([queue.record.id]) }
        return outcomes
    }

    // MARK: History

    public func record(_ events: [OrderEvent]) async throws {
        guard !events.isEmpty else { return }
        try await database.transaction { [self] connection in try await record(events, on: connection) }
    }

    private func record(_ events: [OrderEvent], on connection: PostgresConnection) async throws {
        guard !events.isEmpty else { return }
        try await connection.query("""
            INSERT INTO fs_order_events (order_id, at, kind, detail, actor)
            SELECT x.order_id, x.at, x.kind, x.detail, x.actor
            FROM unnest(\(events.map(\.orderID))::text[], \(events.map(\.at))::bigint[], \(events.map(\.kind.rawValue))::text[],
                        \(events.map(\.detail))::text[], \(events.map(\.actor))::text[]) AS x(order_id, at, kind, detail, actor)
            WHERE NOT EXISTS (SELECT 1 FROM fs_order_events e WHERE e.order_id = x.order_id AND e.kind = x.kind AND e.detail = x.detail)
            """, logger: database.logger)
    }

    public func events(of orderID: String, limit: Int) async throws -> [OrderEvent] {
        // The newest `limit`, oldest first.
        try await database.read("""
            SELECT at, kind, detail, actor FROM fs_order_events WHERE order_id = \(orderID) ORDER BY seq DESC LIMIT \(limit)
            """).reversed().compactMap { row in
            let columns = row.makeRandomAccess()
            // A kind a later version wrote is left out, not mislabelled.
            guard let kind = OrderEvent.Kind(rawValue: try columns.get(1)) else { return nil }
            return OrderEvent(orderID: orderID, at: try columns.get(0), kind: kind, detail: try columns.get(2), actor: try columns.get(3))
        }
    }

    public func orphans(after cursor: Int64, limit: Int) async throws -> OrphanScan {
        // The partial index holds only open orders, in scan order; the message is looked up by its
        // row and id. The plan is pinned to those two index scans: during a sale the table grows
        // faster than autovacuum's statistics, and with stale ones the planner read every open
        // order into a bitmap and sorted them to return the first 500 (measured: 70–90 ms a page
        // with 200k open orders, against ~1 ms for the index scan, four pages a second).
        let rows = try await database.transaction { connection in
            try await connection.query("SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true)",
                                       logger: self.database.logger)
            return try await connection.query("""
                SELECT o.seq, o.order_id, o.channel, m.queue_id = \(self.queue.record.id) AS live, o.created_at,
                       m.queue_id = \(self.queue.deadLetter?.id ?? -1) AS dead
                FROM (SELECT seq, order_id, channel, message_seq, message_id, created_at FROM fs_orders
                      WHERE status IN ('pending', 'processing') AND seq > \(cursor) ORDER BY seq LIMIT \(limit)) AS o
                LEFT JOIN fs_messages m ON m.seq = o.message_seq AND m.message_id = o.message_id
                ORDER BY o.seq
                """, logger: self.database.logger).collect()
        }
        var orphans: [Orphan] = []
        var last: Int64?
        for row in rows {
            let columns = row.makeRandomAccess()
            last = try columns.get(0)
            let channel: String = try columns.get(2)
            // (A dead-lettered message keeps its row: the dead-letter queue's id tells it.)
            let live = try columns.get(3, as: Bool?.self) ?? false
            let dead = try columns.get(5, as: Bool?.self) ?? false
            if channel != OrderChannel.sync.rawValue, !live {
                orphans.append(Orphan(orderID: try columns.get(1), reason: dead ? .deadLettered : .messageGone, placedAt: try columns.get(4)))
            }
        }
        return OrphanScan(orphans: orphans, nextCursor: rows.count < limit ? nil : last)
    }

    public func expiredHolds(now: Int64, limit: Int) async throws -> [Orphan] {
        try await database.read("""
            SELECT order_id FROM fs_orders
            WHERE channel = 'sync' AND status IN ('pending', 'processing') AND hold_until < \(now) ORDER BY hold_until LIMIT \(limit)
            """).map { Orphan(orderID: try $0.makeRandomAccess().get(0), reason: .syncRequestEnded) }
    }

    // MARK: Rows

    static func decodeOrder(_ row: PostgresRandomAccessRow) throws -> Order {
        Order(
            id: try row.get("order_id"), customerID: try row.get("customer_id"),
            items: OrderItem.decodeList(try row.get("items")), total: try row.get("total"),
            status: OrderStatus(rawValue: try row.get("status")) ?? .pending,
            channel: OrderChannel(rawValue: try row.get("channel")) ?? .async,
            attempts: try row.get("attempts"), failureReason: try row.get("failure_reason"),
            createdAt: try row.get("created_at"), updatedAt: try row.get("updated_at"),
            processingAt: try row.get("processing_at"), finishedAt: try row.get("finished_at"), messageID: try row.get("message_id"),
            deadLetteredAt: try row.get("dead_lettered_at"))
    }
}

extension PostgresOrderStore: Catalog {
    public func product(id: String) async throws -> Product? {
        try await database.read("""
            SELECT product_id, stock, reserved, sold, per_customer_limit, price FROM fs_products WHERE product_id = \(id)
            """).first.map(Self.decodeProduct)
    }

    public func products(limit: Int) async throws -> [Product] {
        try await database.read("""
            SELECT product_id, stock, reserved, sold, per_customer_limit, price FROM fs_products ORDER BY product_id LIMIT \(limit)
            """).map(Self.decodeProduct)
    }

    public func putProduct(id: String, stock: Int, perCustomerLimit: Int?, price: Double?) async throws -> Product {
        let rows = try await database.query("""
            INSERT INTO fs_products (product_id, stock, per_customer_limit, price, updated_at)
            VALUES (\(id), \(stock), \(perCustomerLimit), \(price), \(self.database.time.nowMillis()))
            ON CONFLICT (product_id) DO UPDATE SET stock = excluded.stock, per_customer_limit = excluded.per_customer_limit,
                                                   price = excluded.price, updated_at = excluded.updated_at
            RETURNING product_id, stock, reserved, sold, per_customer_limit, price
            """)
        return try Self.decodeProduct(rows[0])
    }

    public func setStock(id: String, stock: Int) async throws -> Product {
        let rows = try await database.query("""
            INSERT INTO fs_products (product_id, stock, updated_at) VALUES (\(id), \(stock), \(self.database.time.nowMillis()))
            ON CONFLICT (product_id) DO UPDATE SET stock = excluded.stock, updated_at = excluded.updated_at
            RETURNING product_id, stock, reserved, sold, per_customer_limit, price
            """)
        return try Self.decodeProduct(rows[0])
    }

    static func decodeProduct(_ row: PostgresRow) throws -> Product {
        let row = row.makeRandomAccess()
        return Product(productID: try row.get(0), stock: try row.get(1), reserved: try row.get(2), sold: try row.get(3),
                       perCustomerLimit: try row.get(4), price: try row.get(5))
    }
}
