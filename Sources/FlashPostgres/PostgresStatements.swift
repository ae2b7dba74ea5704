import FlashBackend
import FlashCore
import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

// MARK: Running statements

extension PostgresDatabase {
    /// Runs `body` in one transaction (BEGIN … COMMIT; rolled back if it throws). Deadlocks and
    /// serialization failures are retried; a lost or unreachable server, or no answer within
    /// ``Configuration/operationTimeout``, throws ``BackendUnavailable``.
    func transaction<T: Sendable>(timeout: Duration? = nil, _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await withRetries {
            try await self.bounded(timeout: timeout) { connection, call in
                try await connection.query("BEGIN", logger: self.logger)
                do {
                    if let timeout {
                        let milliseconds = Self.statementTimeout(timeout).asMilliseconds
                        try await connection.query("SELECT set_config('statement_timeout', \(String(milliseconds)), true)", logger: self.logger)
                    }
                    let result = try await body(connection)
                    // Until here a lost connection rolls the transaction back; from here it may commit.
                    // A call whose deadline has passed sends no COMMIT: its caller heard "nothing stored".
                    guard call.mayCommit() else { throw TimeoutError(limit: timeout ?? self.configuration.operationTimeout) }
                    // COMMIT of a transaction that an error aborted answers "ROLLBACK", not an error.
                    let tag = try await connection.query("COMMIT", logger: self.logger).get().metadata.command
                    guard tag == "COMMIT" else { throw TransactionRolledBack(tag: tag) }
                    return result
                } catch {
                    // A failed ROLLBACK means the connection is gone: the server rolls back.
                    _ = try? await connection.query("ROLLBACK", logger: self.logger)
                    throw error
                }
            }
        }
    }

    /// The server-side limit of one statement within a call of `limit`: 80% of it, so that the
    /// server's cancellation (a clean rollback) comes before the call's deadline.
    static func statementTimeout(_ limit: Duration) -> Duration {
        .milliseconds(max(1, limit.asMilliseconds * 4 / 5))
    }

    /// Runs `body` on one connection without BEGIN/COMMIT: each of its statements commits by
    /// itself, and this returns once the last one's commit is confirmed (see
    /// ``confirmCommitted(on:)``). Retries and failures as ``transaction(timeout:_:)``.
    func statement<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await withRetries {
            try await self.bounded { connection, call in
                // The statement commits by itself: from its sending on, a lost connection leaves
                // its outcome unknown. (So `body` runs one statement: after a first one committed,
                // an error of a second could not be told apart.)
                guard call.mayCommit() else { throw TimeoutError(limit: self.configuration.operationTimeout) }
                let result = try await body(connection)
                try await self.confirmCommitted(on: connection)
                return result
            }
        }
    }

    /// Runs one statement (atomic by itself), collects its rows, and confirms its commit.
    @discardableResult
    func query(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try await statement { connection in
            try await connection.query(query, logger: self.logger).get().rows
        }
    }

    /// Runs one statement that writes nothing and collects its rows: no commit to confirm, so one
    /// round trip fewer than ``query(_:)``.
    func read(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try await withRetries {
            try await self.bounded { connection, _ in
                try await connection.query(query, logger: self.logger).get().rows
            }
        }
    }

    /// Returns once the server has committed the implicit transaction of the last statement run
    /// on `connection`; throws ``BackendUnavailable`` when that cannot be known.
    ///
    /// Why: postgres-nio ends a statement at the server's CommandComplete. Outside BEGIN … COMMIT
    /// the server sends that *before* it commits (the commit runs at the protocol's Sync), so a
    /// commit that fails afterwards (the server shutting down, a deferred constraint) would
    /// otherwise read as success: seen as orders answered 202 and never stored across a
    /// PostgreSQL restart. A connection runs its next statement only after the server's
    /// ReadyForQuery, which follows the commit: a trivial statement answered proves the commit;
    /// a connection lost first leaves it unknown, which the caller is told as "unavailable"
    /// (the API's 503 "not acknowledged": a repeat with the same key settles it).
    func confirmCommitted(on connection: PostgresConnection) async throws {
        do {
            _ = try await connection.query("SELECT 1", logger: logger).get()
        } catch {
            throw UnconfirmedCommit(underlying: error)
        }
    }

    func withRetries<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        if WallClock.nowMillis() < unreachableUntil.load(ordering: .relaxed) {
            throw BackendUnavailable(reason: "PostgreSQL was unreachable moments ago")
        }
        var attempt = 0
        while true {
            do {
                return try await operation()
            } catch {
                if Self.isRetryable(error), attempt < 5 {
                    attempt += 1
                    try await Task.sleep(for: .milliseconds(Int64.random(in: 1...(5 << attempt))))
                    continue
                }
                let translated = Self.translate(error)
                if Self.meansUnreachable(error) { unreachableUntil.store(WallClock.nowMillis() + 500, ordering: .relaxed) }
                throw translated
            }
        }
    }
}
