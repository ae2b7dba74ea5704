import FlashBackend
import PostgresNIO

/// The fleet registry in PostgreSQL (`fs_processes`), shared by every process on the database,
/// whatever machine it runs on.
public final class PostgresFleetRegistry: FleetRegistry {
    let database: PostgresDatabase

    init(database: PostgresDatabase) {
        self.database = database
    }

    public func heartbeat(_ record: ProcessRecord) async throws {
        try await database.query("""
            INSERT INTO fs_processes (id, kind, host, pid, workers, busy, accepted_per_second, processed_per_second, started_at, heartbeat_at)
            VALUES (\(record.id), \(record.kind.rawValue), \(record.host), \(record.pid), \(record.workers), \(record.busy),
                    \(record.acceptedPerSecond), \(record.processedPerSecond), \(record.startedAt), \(record.heartbeatAt))
            ON CONFLICT (id) DO UPDATE SET workers = excluded.workers, busy = excluded.busy, accepted_per_second = excluded.accepted_per_second,
                processed_per_second = excluded.processed_per_second, heartbeat_at = excluded.heartbeat_at
            """)
    }

    public func remove(processID: String) async throws {
        try await database.query("DELETE FROM fs_processes WHERE id = \(processID)")
    }

    public func processes(heartbeatSince since: Int64) async throws -> [ProcessRecord] {
        try await database.read("""
            SELECT id, kind, host, pid, workers, busy, accepted_per_second, processed_per_second, started_at, heartbeat_at
            FROM fs_processes WHERE heartbeat_at >= \(since) ORDER BY started_at, id
            """).map { row in
            let c = row.makeRandomAccess()
            return ProcessRecord(id: try c.get(0), kind: ProcessRecord.Kind(rawValue: try c.get(1)) ?? .worker, host: try c.get(2),
                                 pid: try c.get(3), workers: try c.get(4), busy: try c.get(5), acceptedPerSecond: try c.get(6),
                                 processedPerSecond: try c.get(7), startedAt: try c.get(8), heartbeatAt: try c.get(9))
        }
    }

    @discardableResult
    public func prune(heartbeatBefore millis: Int64) async throws -> Int {
        try await database.query("DELETE FROM fs_processes WHERE heartbeat_at < \(millis) RETURNING 1").count
    }

    public func value(named name: String) async throws -> String? {
        try await database.read("SELECT value FROM fs_fleet_values WHERE name = \(name)").first?.decode(String.self)
    }

    public func setValue(_ value: String, named name: String) async throws {
        try await database.query("""
            INSERT INTO fs_fleet_values (name, value) VALUES (\(name), \(value)) ON CONFLICT (name) DO UPDATE SET value = excluded.value
            """)
    }

    public func replaceValue(named name: String, from expected: String, to new: String) async throws -> Bool {
        try await database.query("UPDATE fs_fleet_values SET value = \(new) WHERE name = \(name) AND value = \(expected) RETURNING 1").count == 1
    }
}
