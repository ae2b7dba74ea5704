import FlashBackend
import FlashCore
import NIOCore
import NIOPosix
import PostgresNIO
import _ConnectionPoolModule

extension PostgresDatabase {
    /// The database could not be opened: unreachable, refused the login, or failed a migration.
    public struct StartupError: Error, CustomStringConvertible {
        public var url: String
        public var underlying: any Error
        public var description: String {
            // postgres-nio keeps details out of `description` (they may hold data); the server's
            // message is what an operator needs here, and it holds no password.
            let detail = (underlying as? PSQLError).map { error in
                [error.serverInfo?[.sqlState].map { "SQLSTATE \($0)" } ?? "\(error.code)", error.serverInfo?[.message],
                 error.underlying.map { "\($0)" }]
                    .compactMap { $0 }.joined(separator: ": ")
            } ?? "\(underlying)"
            return "cannot open PostgreSQL at \(url): \(detail.isEmpty ? "\(underlying)" : detail)"
        }

        /// Whether the server could not be reached (it may answer in a moment), rather than
        /// refused this process (a wrong password or database, a failed migration).
        public var isUnreachable: Bool {
            // The server answered, and refused: unless it said it is starting, stopping or full,
            // asking again will not change its answer.
            if let error = underlying as? PSQLError, error.code == .server {
                return PostgresDatabase.translate(error) is BackendUnavailable
            }
            // TLS the server does not offer (sslmode=require): asking again changes nothing.
            if let error = underlying as? PSQLError, error.code == .sslUnsupported || error.code == .failedToAddSSLHandler { return false }
            // No answer, a refused or lost connection, no connection in time.
            return PostgresDatabase.translate(underlying) is BackendUnavailable || underlying is IOError
                || underlying is NIOConnectionError || underlying is ChannelError
        }
    }

    /// SQLSTATE of a server error, if `error` is one.
    static func sqlState(_ error: any Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    /// Deadlock detected, serialization failure: the transaction can run again as it is.
    static func isRetryable(_ error: any Error) -> Bool {
        guard let state = sqlState(error) else { return false }
        return state == "40P01" || state == "40001"
    }

    /// A check constraint refused a row.
    static func isCheckViolation(_ error: any Error) -> Bool {
        sqlState(error) == "23514"
    }

    /// A unique constraint refused a row (another process stored it first).
    static func isUniqueViolation(_ error: any Error) -> Bool {
        sqlState(error) == "23505"
    }

    /// Whether `error` says the server cannot be reached (no connection could be made, a
    /// connection was lost, the server is shutting down), so that the calls of the next moment
    /// should fail at once. A call that was merely slow says nothing about the others: a
    /// statement the server gave up (`statement_timeout`: one slow read) or a deadline passed
    /// (a transaction waiting on a hot row) must not turn every request of the process away.
    static func meansUnreachable(_ error: any Error) -> Bool {
        if let unconfirmed = error as? UnconfirmedCommit { return meansUnreachable(unconfirmed.underlying) }
        if let state = sqlState(error) { return state.hasPrefix("08") || state.hasPrefix("57P") || state == "53300" }
        if error is ConnectionPoolError { return true }
        guard let error = error as? PSQLError else { return false }
        switch error.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed: return true
        default: return false
        }
    }

    /// Errors that mean "the database cannot be reached now" become ``BackendUnavailable``;
    /// others pass unchanged.
    static func translate(_ error: any Error) -> any Error {
        if error is BackendUnavailable || error is CancellationError { return error }
        if let unconfirmed = error as? UnconfirmedCommit {
            return BackendUnavailable(reason: "\(unconfirmed.underlying is TimeoutError ? "no answer" : "connection lost") after a commit may have been sent (\(translate(unconfirmed.underlying)))",
                                      outcome: .unknown)
        }
        if let timeout = error as? TimeoutError { return BackendUnavailable(reason: "no answer from PostgreSQL within \(timeout.limit.shortDescription)") }
        if error is ConnectionPoolError { return BackendUnavailable(reason: "no connection to PostgreSQL (\(error))") }
        if let error = error as? PSQLError {
            switch error.code {
            case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed,
                 .sslUnsupported, .failedToAddSSLHandler, .queryCancelled:
                return BackendUnavailable(reason: "PostgreSQL connection lost (\(error.code))")
            case .server:
                // Class 08: connection exception; 57P0x: the server is shutting down or starting;
                // 53300: too many connections.
                // 57014: a statement ran past statement_timeout (the server rolled it back).
                if let state = error.serverInfo?[.sqlState], state.hasPrefix("08") || state.hasPrefix("57P") || state == "53300" || state == "57014" {
                    return BackendUnavailable(reason: "PostgreSQL unavailable (SQLSTATE \(state))")
                }
            default:
                break
            }
        }
        return error
    }
}

/// A transaction's COMMIT was answered with another tag ("ROLLBACK": an error had aborted it).
struct TransactionRolledBack: Error, CustomStringConvertible {
    var tag: String
    var description: String { "COMMIT answered \(tag): the transaction was rolled back" }
}

/// A call's connection was lost (or its deadline passed) after its commit may have been sent:
/// its writes may or may not be stored. Told as ``BackendUnavailable`` with an unknown outcome.
struct UnconfirmedCommit: Error, CustomStringConvertible {
    var underlying: any Error
    var description: String { "PostgreSQL stopped answering after a commit may have been sent (\(underlying))" }
}
