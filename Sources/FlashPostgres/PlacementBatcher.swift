import FlashBackend
import FlashCore
import FlashOrders
import FlashQueue
import PostgresNIO
import Synchronization

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
        groups = CallGrouper(maxWeight: Self.maxGroup, line: AdmissionLine(groupLimit: Self.maxGroup)) { group in try await placer.run(group) }
    }

    /// Admission control's view of the placement groups.
    var line: AdmissionLine { groups.line! }

    /// Places one order in the next group; returns when that group has committed. An order
    /// with an admission deadline that still waits for a group then (the group ahead is stuck
    /// on a slow or stalled server), or that the line foretells would, is refused with
    /// ``Overloaded``, never stored.
    func place(_ order: NewOrder, queued: Bool, holdUntil: Int64?) async throws -> Placement {
        let request = Request(order: order, queued: queued, holdUntil: holdUntil)
        guard let deadline = order.admitBy else { return try await groups.call(request).get() }
        let queuedAt = ContinuousClock.now
        return try await groups.call(request, startingBy: deadline) { refusal in
            Overloaded(waited: ContinuousClock.now - queuedAt, refusal: refusal)
        }.get()
    }
}

/// What one group does: its statements, and the rules applied to each order in it.
private struct GroupPlacer: Sendable {
    typealias Request = PlacementBatcher.Request
    let database: PostgresDatabase
    let topicID: Int64
    let paymentsQueueID: Int64
    let strictCatalog: Bool
    let known = KnownProducts()

    /// One group: in one statement when the products as last seen decide it, else in a
    /// transaction that locks them. A unique-key race with another process (the same idempotency
    /// key or order id placed there at the same moment) rolls the group back; it then runs again
    /// and finds that order.
    func run(_ group: [Request]) async throws -> [Result<Placement, any Error>] {
        if let outcome = try await placeInOneStatement(group) { return finish(outcome) }
        var attempt = 0
        while true {
            do {
                let (outcome, products) = try await database.transaction { [self] connection in
                    try await self.placeLocked(group, on: connection)
                }
                // What the locked rows hold now is what the next group may decide on without
                // reading them (and the products not found stay absent).
                known.remember(Self.productIDs(of: group), products)
                return finish(outcome)
            } catch where PostgresDatabase.isUniqueViolation(error) && attempt < 3 {
                attempt += 1
            }
        }
    }

    struct GroupOutcome: Sendable {
        var results: [Result<Placement, any Error>]
        var sentToQueues: [Int64]
    }

    private func finish(_ outcome: GroupOutcome) -> [Result<Placement, any Error>] {
        if !outcome.sentToQueues.isEmpty { database.touched(outcome.sentToQueues) }
        return outcome.results
    }

    /// The group as one statement, one round trip with its commit, decided on the products as
    /// this process last saw them (``KnownProducts``) rather than read under a lock first.
    ///
    /// Only when that can be checked inside the statement: every product known, none with a
    /// per-customer limit, and every order accepted (a refusal is decided on fresh rows, never on
    /// remembered ones). The statement then holds its own guard: it takes the stock with
    /// `CHECK (stock >= 0)` and sets an impossible stock on a product whose price or limit
    /// changed or that appeared meanwhile, so any change that would alter a decision (another
    /// process sold the last units, an admin repriced it) aborts the whole statement, and the
    /// group runs again the locked way. An order already placed under the same key or id fails
    /// it the same way, on the unique index. Returns nil when the group must run locked.
    private func placeInOneStatement(_ group: [Request]) async throws -> GroupOutcome? {
        let productIDs = Self.productIDs(of: group)
        guard var products = known.levels(of: productIDs) else { return nil }
        var bought: [CustomerKey: Int] = [:]
        let now = self.database.time.nowMillis()
        let (results, writes) = try decide(group, now: now, products: &products, bought: &bought, earlierByKey: [:], earlierByID: [:])
        guard results.allSatisfy({ if case .success = $0 { true } else { false } }) else { return nil }
        let absent = productIDs.filter { products[$0] == nil }
        let statement = writeStatement(writes, now: now, products: products, absent: absent)
        do {
            let sent = try await database.statement { connection in
                try await connection.run(Prepared<WriteGroup>(statement), logger: database.logger).map { try $0.decode(Int64.self) }
            }
            known.remember(productIDs, products)
            return GroupOutcome(results: results, sentToQueues: sent)
        } catch where PostgresDatabase.isUniqueViolation(error) || PostgresDatabase.isCheckViolation(error) {
            known.forget(productIDs)
            return nil
        }
    }

    /// Reads what the group needs (earlier orders under the same keys, the products' rows locked,
    /// the customers' counts), decides each order by the core's rules, and writes the group.
    /// Returns the products' levels after the group.
    private func placeLocked(_ group: [Request], on connection: PostgresConnection) async throws -> (GroupOutcome, [String: StockLevel]) {
        let logger = database.logger
        let now = self.database.time.nowMillis()

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
        let productIDs = Self.productIDs(of: group)
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
        let (results, writes) = try decide(group, now: now, products: &products, bought: &bought,
                                               earlierByKey: earlierByKey, earlierByID: earlierByID)

        // 4. The group's writes, in one statement.
        var sent: [Int64] = []
        if !writes.orders.isEmpty {
            let statement = writeStatement(writes, now: now, products: products, absent: [])
            for row in try await connection.run(Prepared<WriteGroup>(statement), logger: logger) {
                sent.append(try row.decode(Int64.self))
            }
        }
        return (GroupOutcome(results: results, sentToQueues: sent), products)
    }

    /// The product ids a group names, sorted (the order rows are locked in).
    private static func productIDs(of group: [Request]) -> [String] {
        Array(Set(group.flatMap { $0.order.items.map(\.productID) })).sorted()
    }

    /// Decides every order of the group in turn on its running state: a repeat of an earlier
    /// order returns that order; a new one is reserved, priced and added to the writes.
    private func decide(_ group: [Request], now: Int64, products: inout [String: StockLevel], bought: inout [CustomerKey: Int],
                        earlierByKey: [CustomerKey: StoredOrder], earlierByID: [String: StoredOrder]) throws
        -> (results: [Result<Placement, any Error>], writes: GroupWrites) {
        var earlierByKey = earlierByKey
        var earlierByID = earlierByID
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
        return (results, writes)
    }

    /// The group's write statement, with its counters and the products' expected state.
    private func writeStatement(_ writes: GroupWrites, now: Int64, products: [String: StockLevel], absent: [String]) -> PostgresQuery {
        var counters = CounterDeltas()
        counters.add("orders.placed", writes.orders.count)
        counters.add(OrderCounts.counterName(.processing), writes.orders.filter { $0.status == .processing }.count)
        return WriteGroup.query(writes, products: products, absent: absent, counters: counters, now: now, topicID: topicID,
                                paymentsQueueID: paymentsQueueID, shard: Int.random(in: 0..<PostgresSchema.counterShards))
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
///
/// The stock update is also the group's guard (``GroupPlacer``'s one-statement path): each
/// product carries the price and limit the group was decided on, and a product found absent
/// carries "absent"; a row that differs gets stock −1, which `CHECK (stock >= 0)` refuses, as it
/// refuses taking more units than there are. Either aborts the whole statement.
///
/// Lock order: products (in product order, `locked`), then per-customer counts and counters,
/// as a locked group and a settlement take them, so that statements of several processes never
/// wait on each other in a cycle. PostgreSQL runs a statement's data-modifying parts in no
/// promised order (in practice the unread ones last to first), so `counted` and `tallied` read
/// `taken` to run after it.
enum WriteGroup: PreparedShape {
    static let sql = query(GroupWrites(), products: [:], absent: [], counters: CounterDeltas(), now: 0, topicID: 0,
                           paymentsQueueID: 0, shard: 0).sql

    static func query(_ writes: GroupWrites, products: [String: StockLevel], absent: [String], counters: CounterDeltas, now: Int64,
                      topicID: Int64, paymentsQueueID: Int64, shard: Int) -> PostgresQuery {
        let (counterNames, counterValues) = counters.sorted
        // The products taken from, as decided (a price or limit of nil travels as NaN or -1),
        // then the ones that must still be absent.
        var ids: [String] = []
        var taken: [Int64] = []
        var present: [Bool] = []
        var prices: [Double] = []
        var limits: [Int64] = []
        for (id, quantity) in writes.stockTaken.sorted(by: { $0.key < $1.key }) {
            ids.append(id)
            taken.append(Int64(quantity))
            present.append(true)
            prices.append(products[id]?.price ?? .nan)
            limits.append(products[id]?.perCustomerLimit.map(Int64.init) ?? -1)
        }
        for id in absent.sorted() {
            ids.append(id)
            taken.append(0)
            present.append(false)
            prices.append(.nan)
            limits.append(-1)
        }
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
        ), locked AS (
            SELECT product_id FROM fs_products WHERE product_id = ANY(\(ids)::text[]) ORDER BY product_id FOR UPDATE
        ), taken AS (
            UPDATE fs_products p
            SET stock = CASE WHEN t.present AND p.price IS NOT DISTINCT FROM NULLIF(t.price, 'NaN')
                                  AND coalesce(p.per_customer_limit, -1) = t.per_customer_limit
                             THEN p.stock - t.quantity ELSE -1 END,
                reserved = p.reserved + t.quantity
            FROM locked l,
                 unnest(\(ids)::text[], \(taken)::bigint[], \(present)::boolean[], \(prices)::float8[], \(limits)::bigint[])
                 AS t(product_id, quantity, present, price, per_customer_limit)
            WHERE p.product_id = l.product_id AND t.product_id = l.product_id
            RETURNING 1
        ), counted AS (
            INSERT INTO fs_customer_purchases (product_id, customer_id, quantity)
            SELECT * FROM unnest(\(purchases.map(\.key.key))::text[], \(purchases.map(\.key.customer))::text[],
                                 \(purchases.map { Int64($0.value) })::bigint[])
            WHERE (SELECT count(*) FROM taken) >= 0  -- after the products' locks (see above)
            ON CONFLICT (product_id, customer_id) DO UPDATE SET quantity = fs_customer_purchases.quantity + excluded.quantity
            RETURNING 1
        ), tallied AS (
            INSERT INTO fs_counters (name, shard, value)
            SELECT n, \(shard), v FROM unnest(\(counterNames)::text[], \(counterValues)::bigint[]) AS d(n, v)
            WHERE (SELECT count(*) FROM taken) >= 0  -- after the products' locks (see above)
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


/// The products as this process's last group left them: present with their stock, price and
/// limit, or absent. What a group may decide on without reading the rows first, because its
/// statement checks them (``WriteGroup``). Bounded: past ``capacity`` products it starts over.
final class KnownProducts: Sendable {
    enum Known: Sendable {
        case present(StockLevel)
        case absent
    }

    static let capacity = 10_000
    private let known = Mutex<[String: Known]>([:])

    /// The levels of `productIDs` (absent ones left out), or nil when one is unknown or has a
    /// per-customer limit (a limit needs the customer's fresh count).
    func levels(of productIDs: [String]) -> [String: StockLevel]? {
        known.withLock { known in
            var levels: [String: StockLevel] = [:]
            for id in productIDs {
                switch known[id] {
                case nil: return nil
                case .absent: continue
                case let .present(level):
                    guard level.perCustomerLimit == nil else { return nil }
                    levels[id] = level
                }
            }
            return levels
        }
    }

    /// Remembers `productIDs` as `levels` holds them (absent when not in it).
    func remember(_ productIDs: [String], _ levels: [String: StockLevel]) {
        known.withLock { known in
            if known.count + productIDs.count > Self.capacity { known.removeAll() }
            for id in productIDs {
                if var level = levels[id] {
                    level.boughtByCustomer = 0
                    known[id] = .present(level)
                } else {
                    known[id] = .absent
                }
            }
        }
    }

    /// Forgets `productIDs`: the next group reads them under a lock.
    func forget(_ productIDs: [String]) {
        known.withLock { known in for id in productIDs { known[id] = nil } }
    }
}
