import PostgresNIO

/// The text of a statement that never changes: every value in it is a bind.
protocol PreparedShape: Sendable {
    static var sql: String { get }
}

/// A statement prepared once per connection and then only bound and executed, for the hot
/// statements whose planning costs more than their work (a group's placement: ~0.3 ms of
/// planning per execution, measured with pg_stat_statements).
///
/// postgres-nio prepares a ``PostgresPreparedStatement`` per connection by its type; this wraps
/// a ``PostgresQuery`` built by the usual bind-safe interpolation, whose text is the shape's
/// (checked), so the statement is written once, in one place.
struct Prepared<Shape: PreparedShape>: PostgresPreparedStatement {
    typealias Row = PostgresRow
    /// Short and unique (PostgreSQL keeps 63 bytes of a name).
    static var name: String { "fs_" + String(describing: Shape.self) }
    static var sql: String { Shape.sql }
    let binds: PostgresBindings

    init(_ query: PostgresQuery) {
        precondition(query.sql == Shape.sql, "a prepared statement's text must not change between executions")
        binds = query.binds
    }

    func makeBindings() throws -> PostgresBindings { binds }
    func decodeRow(_ row: PostgresRow) throws -> PostgresRow { row }
}

extension PostgresConnection {
    /// Runs a prepared statement and collects its rows.
    ///
    /// postgres-nio remembers a failed preparation for the rest of the connection's life (every
    /// later execution of that statement on it fails the same way), so on any failure but an
    /// expected race (a unique or check violation, a deadlock, a serialization failure: retried
    /// by the caller) the connection is closed and
    /// the pool opens a fresh one. Closing inside a transaction rolls it back, as the error does.
    func run<Shape>(_ statement: Prepared<Shape>, logger: Logger) async throws -> [PostgresRow] {
        do {
            var rows: [PostgresRow] = []
            for try await row in try await execute(statement, logger: logger) { rows.append(row) }
            return rows
        } catch {
            let expected = PostgresDatabase.isUniqueViolation(error) || PostgresDatabase.isCheckViolation(error) || PostgresDatabase.isRetryable(error)
            if !expected { try? await close() }
            throw error
        }
    }
}

extension PostgresRandomAccessRow {
    /// Column `index` decoded as `T`.
    func get<T: PostgresDecodable>(_ index: Int, as type: T.Type = T.self) throws -> T {
        try self[index].decode(T.self)
    }

    /// Column `name` decoded as `T`.
    func get<T: PostgresDecodable>(_ name: String, as type: T.Type = T.self) throws -> T {
        try self[name].decode(T.self)
    }
}
