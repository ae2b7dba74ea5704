import GRDB

/// The database schema, as GRDB migrations (applied in order at open; each once).
///
/// v2 ("final states"): an order keeps the row of its payment message (`message_seq`) so the
/// reconciler can tell in one look-up whether the message is still queued; a sync order keeps
/// the time its request answers for it until (`hold_until`); idempotency keys are unique per
/// customer and keep the request's fingerprint; partial indexes list the open orders and the
/// open sync orders by hold; the ledger marks voided charges; `fs_counters` holds durable
/// counters (the reconciler's).
///
/// Each queue's messages live in a table of its own
/// (`fs_q<id>`, created with the queue): its rowid then orders that queue's messages by send
/// time, so "oldest message" and retention are index-free look-ups at the table's left edge.
enum SQLiteSchema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-queues") { db in
            try db.execute(sql: """
                CREATE TABLE fs_queues (
                    id INTEGER PRIMARY KEY,
                    name TEXT NOT NULL UNIQUE,
                    visibility_timeout_ms INTEGER NOT NULL,
                    max_receive_count INTEGER NOT NULL,
                    retention_ms INTEGER NOT NULL,
                    delay_ms INTEGER NOT NULL,
                    max_body_bytes INTEGER NOT NULL,
                    dead_letter_queue_id INTEGER REFERENCES fs_queues(id),
                    expired_count INTEGER NOT NULL DEFAULT 0,
                    created_at INTEGER NOT NULL
                );
                CREATE TABLE fs_topics (
                    id INTEGER PRIMARY KEY,
                    name TEXT NOT NULL UNIQUE
                );
                CREATE TABLE fs_subscriptions (
                    topic_id INTEGER NOT NULL REFERENCES fs_topics(id),
                    queue_id INTEGER NOT NULL REFERENCES fs_queues(id),
                    PRIMARY KEY (topic_id, queue_id)
                );
                """)
        }
        migrator.registerMigration("v1-orders") { db in
            try db.execute(sql: """
                CREATE TABLE fs_orders (
                    seq INTEGER PRIMARY KEY,
                    order_id TEXT NOT NULL UNIQUE,
                    idempotency_key TEXT,
                    customer_id TEXT NOT NULL,
                    items TEXT NOT NULL,
                    total REAL NOT NULL,
                    status TEXT NOT NULL,
                    channel TEXT NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    failure_reason TEXT,
                    reserved TEXT,
                    message_id TEXT,
                    created_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL,
                    processing_at INTEGER,
                    finished_at INTEGER
                );
                CREATE UNIQUE INDEX fs_orders_idempotency ON fs_orders(idempotency_key) WHERE idempotency_key IS NOT NULL;
                CREATE TABLE fs_products (
                    product_id TEXT PRIMARY KEY,
                    stock INTEGER NOT NULL CHECK (stock >= 0),
                    reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
                    sold INTEGER NOT NULL DEFAULT 0 CHECK (sold >= 0),
                    per_customer_limit INTEGER,
                    price REAL,
                    updated_at INTEGER NOT NULL
                );
                CREATE TABLE fs_customer_purchases (
                    product_id TEXT NOT NULL,
                    customer_id TEXT NOT NULL,
                    quantity INTEGER NOT NULL CHECK (quantity >= 0),
                    PRIMARY KEY (product_id, customer_id)
                ) WITHOUT ROWID;
                CREATE TABLE fs_payment_ledger (
                    order_id TEXT PRIMARY KEY,
                    amount REAL NOT NULL,
                    approved INTEGER NOT NULL,
                    charge_id TEXT,
                    reason TEXT,
                    created_at INTEGER NOT NULL
                );
                """)
        }
        migrator.registerMigration("v2-final-states") { db in
            try db.execute(sql: """
                ALTER TABLE fs_orders ADD COLUMN message_seq INTEGER;
                ALTER TABLE fs_orders ADD COLUMN hold_until INTEGER;
                ALTER TABLE fs_orders ADD COLUMN request_fingerprint TEXT;
                DROP INDEX fs_orders_idempotency;
                CREATE UNIQUE INDEX fs_orders_idempotency ON fs_orders(customer_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
                CREATE INDEX fs_orders_open ON fs_orders(seq) WHERE status IN ('pending', 'processing');
                CREATE INDEX fs_orders_sync_holds ON fs_orders(hold_until) WHERE channel = 'sync' AND status IN ('pending', 'processing');
                UPDATE fs_orders SET hold_until = created_at + 600000 WHERE channel = 'sync' AND status IN ('pending', 'processing');
                ALTER TABLE fs_payment_ledger ADD COLUMN voided INTEGER NOT NULL DEFAULT 0;
                CREATE TABLE fs_counters (
                    name TEXT PRIMARY KEY,
                    value INTEGER NOT NULL DEFAULT 0
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v3-fleet") { db in
            // Counts by status and ledger tallies become stored counters, moved in the same
            // transactions as the rows they count: exact for every process on the file, O(1) to read.
            try db.execute(sql: """
                INSERT INTO fs_counters (name, value)
                    SELECT 'orders.' || status, COUNT(*) FROM fs_orders WHERE status != 'pending' GROUP BY status
                    ON CONFLICT(name) DO UPDATE SET value = excluded.value;
                INSERT INTO fs_counters (name, value)
                    SELECT 'payments.approved', COALESCE(SUM(approved), 0) FROM fs_payment_ledger WHERE true
                    ON CONFLICT(name) DO UPDATE SET value = excluded.value;
                INSERT INTO fs_counters (name, value)
                    SELECT 'payments.voided', COALESCE(SUM(voided), 0) FROM fs_payment_ledger WHERE true
                    ON CONFLICT(name) DO UPDATE SET value = excluded.value;
                INSERT INTO fs_counters (name, value)
                    SELECT 'payments.declined', COUNT(*) - COALESCE(SUM(approved), 0) - COALESCE(SUM(voided), 0) FROM fs_payment_ledger WHERE true
                    ON CONFLICT(name) DO UPDATE SET value = excluded.value;
                CREATE TABLE fs_processes (
                    id TEXT PRIMARY KEY,
                    kind TEXT NOT NULL,
                    host TEXT NOT NULL,
                    pid INTEGER NOT NULL,
                    workers INTEGER NOT NULL,
                    busy INTEGER NOT NULL,
                    accepted_per_second REAL NOT NULL,
                    processed_per_second REAL NOT NULL,
                    started_at INTEGER NOT NULL,
                    heartbeat_at INTEGER NOT NULL
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v4-fleet-values") { db in
            try db.execute(sql: "CREATE TABLE fs_fleet_values (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
        }
        migrator.registerMigration("v5-order-events-and-dead-letters") { db in
            // What an order's row does not say (OrderEvent): written off the common path only.
            try db.execute(sql: """
                CREATE TABLE fs_order_events (
                    seq INTEGER PRIMARY KEY,
                    order_id TEXT NOT NULL,
                    at INTEGER NOT NULL,
                    kind TEXT NOT NULL,
                    detail TEXT NOT NULL,
                    actor TEXT NOT NULL
                );
                CREATE INDEX fs_order_events_order ON fs_order_events(order_id, seq);
                ALTER TABLE fs_orders ADD COLUMN dead_lettered_at INTEGER;
                """)
        }
        return migrator
    }

    /// Every stored counter.
    static func counters(_ db: Database) throws -> [String: Int] {
        try Dictionary(uniqueKeysWithValues: Row.fetchAll(db.cachedStatement(sql: "SELECT name, value FROM fs_counters")).map { ($0[0] as String, $0[1] as Int) })
    }

    /// The table holding the messages of queue `id`.
    static func messageTable(_ id: Int64) -> String { "fs_q\(id)" }

    static func createMessageTable(_ db: Database, queueID: Int64) throws {
        let table = messageTable(queueID)
        try db.execute(sql: """
            CREATE TABLE IF NOT EXISTS \(table) (
                seq INTEGER PRIMARY KEY,
                message_id TEXT NOT NULL,
                body TEXT NOT NULL,
                sent_at INTEGER NOT NULL,
                visible_at INTEGER NOT NULL,
                receive_count INTEGER NOT NULL DEFAULT 0,
                receipt INTEGER NOT NULL DEFAULT 0,
                first_received_at INTEGER NOT NULL DEFAULT 0
            );
            CREATE INDEX IF NOT EXISTS \(table)_visible ON \(table)(visible_at);
            """)
    }
}
