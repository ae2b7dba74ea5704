import FlashCore
import FlashOrders
import FlashQueue
import PostgresNIO

/// Places orders in groups: every order that arrives while a group's transaction runs joins the
/// next group, and a group is one transaction of a fixed handful of statements, whatever its size.
///
/// **Why.** A flash sale sends every buyer at one product row. One transaction per order holds
/// that row's lock across a commit (a WAL flush) and a few round trips, so the row passes
/// ~2.7k orders/s here however many processes push (pgbench, a conditional UPDATE on one row).
/// A group takes the row lock once: it locks the products it names (`SELECT … FOR UPDATE`, in
/// product order, so groups of different processes cannot deadlock), applies the core's
/// ``InventoryRules`` to each order in turn in memory, then writes every order, message,
/// stock change, per-customer count and counter in one statement. Over-selling stays
/// impossible with any number of API processes: each group decides on rows it holds locked
/// until its commit, so groups of different processes take turns on a product.
///
/// The alternatives considered: sharded stock counters (stock split over N rows) need a
/// rebalancing step when one shard runs dry and make "sold out" a scan of all shards; a table
/// of one row per unit claimed with SKIP LOCKED costs a row per unit and a write per unit.
/// Grouping keeps one row per product and makes the lock's cost per group, not per order.
///
/// A group's orders fail or succeed together only when the database does (then each caller
/// gets ``BackendUnavailable`` and nothing of the group is stored); a refusal (sold out, limit,
/// idempotency conflict) is decided per order and stores nothing for that order alone.
final class PlacementBatcher: Sendable {
    struct Request: Sendable {
        var order: NewOrder
        var queued: Bool
        var holdUntil: Int64?
    }

    /// The most orders in one group.
    static let maxGroup = 512
    private let groups: CallGrouper<Request, Result<Placement, any Error>>

    init(database: PostgresDatabase, topicID: Int64, paymentsQueueID: Int64, strictCatalog: Bool) {
        let placer = GroupPlacer(database: database, topicID: topicID, paymentsQueueID: paymentsQueueID, strictCatalog: strictCatalog)
        // One group in flight at a time: measured with one API process (wrk -c64), two groups at
        // once were no faster and four or eight slower: smaller groups, each paying its own
        // round trips, on the same two cores.
        groups = CallGrouper(maxWeight: Self.maxGroup) { group in try await placer.run(group) }
    }

    /// Places one order in the next group; returns when that group has committed.
    func place(_ order: NewOrder, queued: Bool, holdUntil: Int64?) async throws -> Placement {
        try await groups.call(Request(order: order, queued: queued, holdUntil: holdUntil)).get()
    }
}

/// What one group does: its transaction, and the rules applied to each order in it.
private struct GroupPlacer: Sendable {
    typealias Request = PlacementBatcher.Request
    let database: PostgresDatabase
    let topicID: Int64
    let paymentsQueueID: Int64
    let strictCatalog: Bool

    /// One group's transaction. A unique-key race with another process (the same idempotency key
    /// or order id placed there at the same moment) rolls the group back; it then runs again and
    /// finds that order.
    func run(_ group: [Request]) async throws -> [Result<Placement, any Error>] {
        var attempt = 0
        while true {
            do {
                let plan = try await database.transaction { [self] connection in
                    try await self.place(group, on: connection)
                }
                if !plan.sentToQueues.isEmpty { database.touched(plan.sentToQueues) }
                return plan.results
            } catch where PostgresDatabase.isUniqueViolation(error) && attempt < 3 {
                attempt += 1
            }
        }
    }

    struct GroupOutcome: Sendable {
        var results: [Result<Placement, any Error>]
        var sentToQueues: [Int64]
    }

    /// Reads what the group needs (earlier orders under the same keys, the products' rows locked,
    /// the customers' counts), decides each order by the core's rules, and writes the group.
    private func place(_ group: [Request], on connection: PostgresConnection) async throws -> GroupOutcome {
        let logger = database.logger
        let now = WallClock.nowMillis()

        // 1. Orders placed before under the same idempotency keys or client order ids.
        let keyed = group.filter { $0.order.idempotencyKey != nil }
        let clientIDs = group.filter(\.order.idChosenByClient).map(\.order.id)
        var earlierByKey: [CustomerKey: StoredOrder] = [:]
        var earlierByID: [String: StoredOrder] = [:]
        if !keyed.isEmpty || !clientIDs.isEmpty {
            let customers = keyed.map(\.order.customerID)
            let keys = keyed.map { $0.order.idempotencyKey ?? "" }
            let rows = try await connection.query("""
                SELECT \(unescaped: PostgresOrderStore.columns), request_fingerprint FROM fs_orders
                WHERE (customer_id, idempotency_key) IN (SELECT * FROM unnest(\(customers)::text[], \(keys)::text[]))
                   OR order_id = ANY(\(clientIDs)::text[])
                """, logger: logger).collect()
            for row in rows {
                let stored = try StoredOrder(row)
                if let key = stored.idempotencyKey { earlierByKey[CustomerKey(customer: stored.order.customerID, key: key)] = stored }
                earlierByID[stored.order.id] = stored
            }
        }

        // 2. The products named, locked in one order; and the customers' counts for limited ones.
        let productIDs = Array(Set(group.flatMap { $0.order.items.map(\.productID) })).sorted()
        var products: [String: StockLevel] = [:]
        for row in try await connection.run(Prepared<LockProducts>(LockProducts.query(productIDs)), logger: logger) {
            let (id, stock, limit, price) = try row.decode((String, Int, Int?, Double?).self)
            products[id] = StockLevel(stock: stock, perCustomerLimit: limit, price: price, boughtByCustomer: 0)
        }
        var bought: [CustomerKey: Int] = [:]
        let limitedPairs = Set(group.flatMap { request in
            request.order.items.compactMap { item in
                products[item.productID]?.perCustomerLimit == nil ? nil : CustomerKey(customer: request.order.customerID, key: item.productID)
            }
        })
        if !limitedPairs.isEmpty {
            let pairs = Array(limitedPairs)
            for try await (product, customer, quantity) in try await connection.query("""
                SELECT product_id, customer_id, quantity FROM fs_customer_purchases
                WHERE (product_id, customer_id) IN (SELECT * FROM unnest(\(pairs.map(\.key))::text[], \(pairs.map(\.customer))::text[]))
                """, logger: logger).decode((String, String, Int).self) {
                bought[CustomerKey(customer: customer, key: product)] = quantity
            }
        }

        // 3. Each order in turn, by the core's rules, on the group's running state.
        var writes = GroupWrites()
        var results: [Result<Placement, any Error>] = []
        for request in group {
            do {
                if let earlier = try Self.earlier(request.order, byKey: earlierByKey, byID: earlierByID) {
                    results.append(.success(Placement(order: earlier.order, messageID: earlier.order.messageID, created: false)))
                    continue
                }
                let placement = try decide(request, now: now, products: &products, bought: &bought, writes: &writes)
                let stored = StoredOrder(order: placement.order, idempotencyKey: request.order.idempotencyKey,
                                         fingerprint: request.order.storedFingerprint)
                if let key = request.order.idempotencyKey { earlierByKey[CustomerKey(customer: request.order.customerID, key: key)] = stored }
                earlierByID[placement.order.id] = stored
                results.append(.success(placement))
            } catch let error as InventoryRefusal {
                results.append(.failure(error))
            } catch let error as PlacementConflict {
                results.append(.failure(error))
            }
        }

        // 4. The group's writes, in one statement.
        guard !writes.orders.isEmpty else { return GroupOutcome(results: results, sentToQueues: []) }
        var counters = CounterDeltas()
        counters.add("orders.placed", writes.orders.count)
        counters.add(OrderCounts.counterName(.processing), writes.orders.filter { $0.status == .processing }.count)
        let statement = WriteGroup.query(writes, counters: counters, now: now, topicID: topicID, paymentsQueueID: paymentsQueueID,
                                         shard: Int.random(in: 0..<PostgresSchema.counterShards))
        var sent: [Int64] = []
        for row in try await connection.run(Prepared<WriteGroup>(statement), logger: logger) {
            sent.append(try row.decode(Int64.self))
        }
        return GroupOutcome(results: results, sentToQueues: sent)
    }

    /// One order against the group's running state: reserve (all items or none), price, build
    /// its row and message. Throws ``InventoryRefusal`` and leaves the state as it was.
    private func decide(_ request: Request, now: Int64, products: inout [String: StockLevel], bought: inout [CustomerKey: Int],
                        writes: inout GroupWrites) throws -> Placement {
        let order = request.order
        var reservation = Reservation()
        var prices: [String: Double] = [:]
        var levels = products
        var counts = bought
        for wanted in InventoryRules.wantedUnits(order.items) {
            let pair = CustomerKey(customer: order.customerID, key: wanted.productID)
            var level = levels[wanted.productID]
            if level?.perCustomerLimit != nil { level?.boughtByCustomer = counts[pair] ?? 0 }
            if let price = level?.price { prices[wanted.productID] = price }
            guard try InventoryRules.decide(productID: wanted.productID, quantity: wanted.quantity, level: level,
                                            strictCatalog: strictCatalog || order.requiresCatalog),
                  let current = level
            else { continue }
            levels[wanted.productID]?.stock = current.stock - wanted.quantity
            if current.perCustomerLimit != nil { counts[pair, default: 0] += wanted.quantity }
            reservation.units.append(wanted)
        }
        // Every item passed: the order's reservation joins the group.
        products = levels
        bought = counts
        for units in reservation.units {
            writes.stockTaken[units.productID, default: 0] += units.quantity
            if products[units.productID]?.perCustomerLimit != nil {
                writes.purchases[CustomerKey(customer: order.customerID, key: units.productID), default: 0] += units.quantity
            }
        }
        let priced = order.priced(by: prices)
        var messageID: String?
        if request.queued {
            let id = TimeOrderedID.make()
            messageID = id
            writes.messageIDs.append(id)
            writes.messageBodies.append(PaymentMessage(orderID: priced.id, customerID: priced.customerID, total: priced.total).body)
        }
        let stored = Order.placed(priced, queued: request.queued, messageID: messageID, now: now)
        writes.orders.append(stored)
        writes.keys.append(order.idempotencyKey ?? "")
        writes.reservations.append(reservation.encoded ?? "")
        writes.holds.append(request.holdUntil ?? -1)
        writes.fingerprints.append(order.storedFingerprint ?? "")
        return Placement(order: stored, messageID: messageID, created: true)
    }

    /// The order a repeated request names, as ``OrderStore`` defines it: by the customer's key,
    /// else by the client's order id (another customer's id is taken; another request's key is a mismatch).
    private static func earlier(_ order: NewOrder, byKey: [CustomerKey: StoredOrder], byID: [String: StoredOrder]) throws -> StoredOrder? {
        if let key = order.idempotencyKey, let earlier = byKey[CustomerKey(customer: order.customerID, key: key)] {
            if let fingerprint = earlier.fingerprint, fingerprint != order.fingerprint { throw PlacementConflict.idempotencyMismatch(key: key) }
            return earlier
        }
        guard order.idChosenByClient, let earlier = byID[order.id] else { return nil }
        guard earlier.order.customerID == order.customerID else { throw PlacementConflict.orderIDTaken(orderID: order.id) }
        if let fingerprint = earlier.fingerprint, fingerprint != order.fingerprint {
            throw PlacementConflict.idempotencyMismatch(key: order.idempotencyKey ?? order.id)
        }
        return earlier
    }
}

/// Step 2 of a group: the products it names, locked in product order.
enum LockProducts: PreparedShape {
    static let sql = query([]).sql

    static func query(_ productIDs: [String]) -> PostgresQuery {
        """
        SELECT product_id, stock, per_customer_limit, price FROM fs_products WHERE product_id = ANY(\(productIDs)::text[])
        ORDER BY product_id FOR UPDATE
        """
    }
}

/// Step 4 of a group: every order, message, stock change, per-customer count and counter in
/// one statement; returns the queues that got messages.
enum WriteGroup: PreparedShape {
    static let sql = query(GroupWrites(), counters: CounterDeltas(), now: 0, topicID: 0, paymentsQueueID: 0, shard: 0).sql

    static func query(_ writes: GroupWrites, counters: CounterDeltas, now: Int64, topicID: Int64, paymentsQueueID: Int64, shard: Int) -> PostgresQuery {
        let (counterNames, counterValues) = counters.sorted
        let stock = writes.stockTaken.sorted { $0.key < $1.key }
        let purchases = writes.purchases.sorted { ($0.key.key, $0.key.customer) < ($1.key.key, $1.key.customer) }
        let o = writes.orders
        return """
        WITH sent AS (
            INSERT INTO fs_messages (queue_id, message_id, body, sent_at, visible_at)
            SELECT q.id, m.message_id, m.body, \(now), \(now) + q.delay_ms
            FROM unnest(\(writes.messageIDs)::text[], \(writes.messageBodies)::text[]) AS m(message_id, body)
            CROSS JOIN fs_subscriptions s JOIN fs_queues q ON q.id = s.queue_id
            WHERE s.topic_id = \(topicID)
            RETURNING seq, queue_id, message_id
        ), placed AS (
            INSERT INTO fs_orders (order_id, idempotency_key, customer_id, items, total, status, channel, attempts, reserved,
                                   message_id, message_seq, hold_until, request_fingerprint, created_at, updated_at, processing_at)
            SELECT x.order_id, NULLIF(x.idempotency_key, ''), x.customer_id, x.items, x.total, x.status, x.channel, x.attempts,
                   NULLIF(x.reserved, ''), NULLIF(x.message_id, ''), s.seq,
                   NULLIF(x.hold_until, -1), NULLIF(x.fingerprint, ''), \(now), \(now), NULLIF(x.processing_at, -1)
            FROM unnest(\(o.map(\.id))::text[], \(writes.keys)::text[], \(o.map(\.customerID))::text[],
                        \(o.map { OrderItem.encodeList($0.items) })::text[], \(o.map(\.total))::float8[],
                        \(o.map(\.status.rawValue))::text[], \(o.map(\.channel.rawValue))::text[], \(o.map { Int64($0.attempts) })::bigint[],
                        \(writes.reservations)::text[], \(o.map { $0.messageID ?? "" })::text[], \(writes.holds)::bigint[],
                        \(writes.fingerprints)::text[], \(o.map { $0.processingAt ?? -1 })::bigint[])
                 AS x(order_id, idempotency_key, customer_id, items, total, status, channel, attempts, reserved, message_id,
                      hold_until, fingerprint, processing_at)
            -- A join, not a subquery per order: one pass over the group's messages.
            LEFT JOIN sent s ON s.message_id = x.message_id AND s.queue_id = \(paymentsQueueID)
            RETURNING 1
        ), taken AS (
            UPDATE fs_products p SET stock = p.stock - t.quantity, reserved = p.reserved + t.quantity
            FROM unnest(\(stock.map(\.key))::text[], \(stock.map { Int64($0.value) })::bigint[]) AS t(product_id, quantity)
            WHERE p.product_id = t.product_id
            RETURNING 1
        ), counted AS (
            INSERT INTO fs_customer_purchases (product_id, customer_id, quantity)
            SELECT * FROM unnest(\(purchases.map(\.key.key))::text[], \(purchases.map(\.key.customer))::text[],
                                 \(purchases.map { Int64($0.value) })::bigint[])
            ON CONFLICT (product_id, customer_id) DO UPDATE SET quantity = fs_customer_purchases.quantity + excluded.quantity
            RETURNING 1
        ), tallied AS (
            INSERT INTO fs_counters (name, shard, value)
            SELECT n, \(shard), v FROM unnest(\(counterNames)::text[], \(counterValues)::bigint[]) AS d(n, v)
            ON CONFLICT (name, shard) DO UPDATE SET value = fs_counters.value + excluded.value
            RETURNING 1
        )
        SELECT DISTINCT queue_id FROM sent
        """
    }
}

/// A customer and a key (an idempotency key, or a product id for per-customer counts).
struct CustomerKey: Hashable, Sendable {
    var customer: String
    var key: String
}

/// What a group writes, as columns for `unnest`. Optional values travel as '' or -1 and become
/// NULL in SQL (postgres-nio binds arrays of non-optional elements).
struct GroupWrites {
    var orders: [Order] = []
    var keys: [String] = []
    var reservations: [String] = []
    var holds: [Int64] = []
    var fingerprints: [String] = []
    var messageIDs: [String] = []
    var messageBodies: [String] = []
    var stockTaken: [String: Int] = [:]
    var purchases: [CustomerKey: Int] = [:]
}

/// An order row with what idempotency needs.
struct StoredOrder: Sendable {
    var order: Order
    var idempotencyKey: String?
    var fingerprint: String?

    init(order: Order, idempotencyKey: String?, fingerprint: String?) {
        self.order = order
        self.idempotencyKey = idempotencyKey
        self.fingerprint = fingerprint
    }

    /// From a row of ``PostgresOrderStore/columns`` followed by `request_fingerprint`.
    init(_ row: PostgresRow) throws {
        let columns = row.makeRandomAccess()
        order = try PostgresOrderStore.decodeOrder(columns)
        idempotencyKey = try columns.get("idempotency_key")
        fingerprint = try columns.get("request_fingerprint")
    }
}

