import FlashBackend
import GRDB

/// The fleet registry in the database file (`fs_processes`), shared by every process on it.
public final class SQLiteFleetRegistry: FleetRegistry {
    let database: SQLiteDatabase

    public init(database: SQLiteDatabase) {
        self.database = database
    }

    public func heartbeat(_ record: ProcessRecord) async throws {
        try await database.write { db in
            try db.cachedStatement(sql: """
                INSERT INTO fs_processes (id, kind, host, pid, workers, busy, accepted_per_second, processed_per_second, started_at, heartbeat_at)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                ON CONFLICT(id) DO UPDATE SET workers = ?5, busy = ?6, accepted_per_second = ?7, processed_per_second = ?8, heartbeat_at = ?10
                """).execute(arguments: [record.id, record.kind.rawValue, record.host, record.pid, record.workers, record.busy,
                                         record.acceptedPerSecond, record.processedPerSecond, record.startedAt, record.heartbeatAt])
        }
    }

    public func remove(processID: String) async throws {
        try await database.write { db in try db.execute(sql: "DELETE FROM fs_processes WHERE id = ?", arguments: [processID]) }
    }

    public func processes(heartbeatSince since: Int64) async throws -> [ProcessRecord] {
        try await database.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM fs_processes WHERE heartbeat_at >= ? ORDER BY started_at, id"),
                             arguments: [since]).map { row in
                ProcessRecord(id: row["id"], kind: ProcessRecord.Kind(rawValue: row["kind"]) ?? .worker, host: row["host"], pid: row["pid"],
                              workers: row["workers"], busy: row["busy"], acceptedPerSecond: row["accepted_per_second"],
                              processedPerSecond: row["processed_per_second"], startedAt: row["started_at"], heartbeatAt: row["heartbeat_at"])
            }
        }
    }

    @discardableResult
    public func prune(heartbeatBefore millis: Int64) async throws -> Int {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM fs_processes WHERE heartbeat_at < ?", arguments: [millis])
            return db.changesCount
        }
    }

    public func value(named name: String) async throws -> String? {
        try await database.read { db in try String.fetchOne(db, sql: "SELECT value FROM fs_fleet_values WHERE name = ?", arguments: [name]) }
    }

    public func setValue(_ value: String, named name: String) async throws {
        try await database.write { db in
            try db.execute(sql: "INSERT INTO fs_fleet_values (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = ?2",
                           arguments: [name, value])
        }
    }

    public func replaceValue(named name: String, from expected: String, to new: String) async throws -> Bool {
        try await database.write { db in
            try db.execute(sql: "UPDATE fs_fleet_values SET value = ? WHERE name = ? AND value = ?", arguments: [new, name, expected])
            return db.changesCount == 1
        }
    }
}
