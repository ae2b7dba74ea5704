import Logging
import PostgresNIO

/// The PostgreSQL schema as numbered migrations, applied at start-up.
///
/// Each process runs ``migrate(_:)`` when it opens the database: inside one transaction it takes
/// a transaction-scoped advisory lock (so processes that start together wait for each other),
/// reads which versions `fs_migrations` records, applies the missing ones in order and records
/// them. A migration is applied once; running it again is a no-op; a failed one rolls back whole.
///
/// The tables mirror the embedded backend's, with two choices of their own for a server that many
/// processes write at once:
/// - one `fs_messages` table for every queue, indexed by (queue, visible_at) for receives and
///   (queue, sent_at) for retention; its rows are short-lived (a delivered, finished message is
///   deleted), so autovacuum is told to visit it often.
/// - counters (`fs_counters`) are sharded: a transaction adds to one of 16 rows per counter, picked
///   at random, so that workers finishing orders at once do not queue on one hot row; a read sums
///   the shards.
enum PostgresSchema {
    struct Migration {
        var version: Int
        var name: String
        var statements: [String]
    }

    static let migrations: [Migration] = [
        Migration(version: 1, name: "queues, orders, stock, ledger, fleet", statements: [
            """
            CREATE TABLE fs_queues (
                id bigserial PRIMARY KEY,
                name text NOT NULL UNIQUE,
                visibility_timeout_ms bigint NOT NULL,
                max_receive_count integer NOT NULL,
                retention_ms bigint NOT NULL,
                delay_ms bigint NOT NULL,
                max_body_bytes integer NOT NULL,
                dead_letter_queue_id bigint REFERENCES fs_queues(id),
                created_at bigint NOT NULL
            )
            """,
            "CREATE TABLE fs_topics (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE)",
            """
            CREATE TABLE fs_subscriptions (
                topic_id bigint NOT NULL REFERENCES fs_topics(id),
                queue_id bigint NOT NULL REFERENCES fs_queues(id),
                PRIMARY KEY (topic_id, queue_id)
            )
            """,
            """
            CREATE TABLE fs_messages (
                seq bigserial PRIMARY KEY,
                queue_id bigint NOT NULL,
                message_id text NOT NULL,
                body text NOT NULL,
                sent_at bigint NOT NULL,
                visible_at bigint NOT NULL,
                receive_count integer NOT NULL DEFAULT 0,
                receipt bigint NOT NULL DEFAULT 0,
                first_received_at bigint NOT NULL DEFAULT 0
            ) WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02)
            """,
            "CREATE INDEX fs_messages_visible ON fs_messages (queue_id, visible_at)",
            "CREATE INDEX fs_messages_sent ON fs_messages (queue_id, sent_at)",
            """
            CREATE TABLE fs_orders (
                seq bigserial PRIMARY KEY,
                order_id text NOT NULL UNIQUE,
                idempotency_key text,
                customer_id text NOT NULL,
                items text NOT NULL,
                total double precision NOT NULL,
                status text NOT NULL,
                channel text NOT NULL,
                attempts integer NOT NULL DEFAULT 0,
                failure_reason text,
                reserved text,
                message_id text,
                message_seq bigint,
                hold_until bigint,
                request_fingerprint text,
                created_at bigint NOT NULL,
                updated_at bigint NOT NULL,
                processing_at bigint,
                finished_at bigint
            ) WITH (fillfactor = 85)
            """,
            "CREATE UNIQUE INDEX fs_orders_idempotency ON fs_orders (customer_id, idempotency_key) WHERE idempotency_key IS NOT NULL",
            "CREATE INDEX fs_orders_open ON fs_orders (seq) WHERE status IN ('pending', 'processing')",
            "CREATE INDEX fs_orders_sync_holds ON fs_orders (hold_until) WHERE channel = 'sync' AND status IN ('pending', 'processing')",
            """
            CREATE TABLE fs_products (
                product_id text PRIMARY KEY,
                stock integer NOT NULL CHECK (stock >= 0),
                reserved integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
                sold integer NOT NULL DEFAULT 0 CHECK (sold >= 0),
                per_customer_limit integer,
                price double precision,
                updated_at bigint NOT NULL
            )
            """,
            """
            CREATE TABLE fs_customer_purchases (
                product_id text NOT NULL,
                customer_id text NOT NULL,
                quantity integer NOT NULL CHECK (quantity >= 0),
                PRIMARY KEY (product_id, customer_id)
            )
            """,
            """
            CREATE TABLE fs_payment_ledger (
                order_id text PRIMARY KEY,
                amount double precision NOT NULL,
                approved boolean NOT NULL,
                voided boolean NOT NULL DEFAULT false,
                charge_id text,
                reason text,
                created_at bigint NOT NULL
            )
            """,
            """
            CREATE TABLE fs_counters (
                name text NOT NULL,
                shard integer NOT NULL,
                value bigint NOT NULL DEFAULT 0,
                PRIMARY KEY (name, shard)
            )
            """,
            """
            CREATE TABLE fs_processes (
                id text PRIMARY KEY,
                kind text NOT NULL,
                host text NOT NULL,
                pid integer NOT NULL,
                workers integer NOT NULL,
                busy integer NOT NULL,
                accepted_per_second double precision NOT NULL,
                processed_per_second double precision NOT NULL,
                started_at bigint NOT NULL,
                heartbeat_at bigint NOT NULL
            )
            """,
        ]),
        Migration(version: 2, name: "fleet values", statements: [
            "CREATE TABLE fs_fleet_values (name text PRIMARY KEY, value text NOT NULL)",
        ]),
        // What an order's row does not say (OrderEvent): written off the common path only.
        Migration(version: 3, name: "order events, dead letters", statements: [
            """
            CREATE TABLE fs_order_events (
                seq bigserial PRIMARY KEY,
                order_id text NOT NULL,
                at bigint NOT NULL,
                kind text NOT NULL,
                detail text NOT NULL,
                actor text NOT NULL
            )
            """,
            "CREATE INDEX fs_order_events_order ON fs_order_events (order_id, seq)",
            // (A column without a default: a change to the catalog only, whatever the table's size.)
            "ALTER TABLE fs_orders ADD COLUMN dead_lettered_at bigint",
        ]),
    ]

    /// Applies the migrations this database lacks, once, whatever the number of processes doing so at once.
    static func migrate(_ database: PostgresDatabase) async throws {
        let schema = database.configuration.schema
        // A start-up step, not a request: it may wait for another process's migration.
        try await database.transaction(timeout: .seconds(120)) { connection in
            // One lock per schema, released at COMMIT; the schema itself is created under it
            // (two concurrent CREATE SCHEMA IF NOT EXISTS can collide).
            let key = "flashsale.migrations." + (schema ?? "(default)")
            try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\(key)))", logger: database.logger)
            if let schema {
                try await connection.query("CREATE SCHEMA IF NOT EXISTS \(unescaped: "\"" + schema + "\"")", logger: database.logger)
            }
            try await connection.query("""
                CREATE TABLE IF NOT EXISTS fs_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
                """, logger: database.logger)
            var applied: Set<Int> = []
            for try await version in try await connection.query("SELECT version FROM fs_migrations", logger: database.logger).decode(Int.self) {
                applied.insert(version)
            }
            for migration in migrations where !applied.contains(migration.version) {
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: database.logger)
                }
                try await connection.query("INSERT INTO fs_migrations (version, name) VALUES (\(migration.version), \(migration.name))",
                                           logger: database.logger)
                database.logger.notice("applied migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            }
        }
    }

    /// Shards per counter (see the type's documentation).
    static let counterShards = 16
}

/// Counter changes made by one transaction, written by one statement at its end
/// (``write(on:logger:)``), into one shard per counter.
struct CounterDeltas: Sendable {
    private(set) var deltas: [String: Int] = [:]

    mutating func add(_ name: String, _ delta: Int) {
        guard delta != 0 else { return }
        deltas[name, default: 0] += delta
    }

    var isEmpty: Bool { deltas.values.allSatisfy { $0 == 0 } }

    /// Names and values, sorted by name: every transaction locks counter rows in the same order.
    var sorted: (names: [String], values: [Int64]) {
        let pairs = deltas.filter { $0.value != 0 }.sorted { $0.key < $1.key }
        return (pairs.map(\.key), pairs.map { Int64($0.value) })
    }

    /// Adds the deltas in one statement.
    func write(on connection: PostgresConnection, logger: Logger) async throws {
        guard !isEmpty else { return }
        let (names, values) = sorted
        let shard = Int.random(in: 0..<PostgresSchema.counterShards)
        try await connection.query("""
            INSERT INTO fs_counters (name, shard, value) SELECT n, \(shard), v FROM unnest(\(names)::text[], \(values)::bigint[]) AS d(n, v)
            ON CONFLICT (name, shard) DO UPDATE SET value = fs_counters.value + excluded.value
            """, logger: logger)
    }

    /// Every counter, summed over its shards.
    static func read(_ database: PostgresDatabase, prefix: String) async throws -> [String: Int] {
        var values: [String: Int] = [:]
        for row in try await database.read("SELECT name, SUM(value)::bigint FROM fs_counters WHERE name LIKE \(prefix + "%") GROUP BY name") {
            let row = row.makeRandomAccess()
            values[try row.get(0, as: String.self)] = Int(try row.get(1, as: Int64.self))
        }
        return values
    }
}
