import FlashPostgres
import Foundation
import Logging

// Test support: the PostgreSQL the test command started, and a database or backend running for
// one test outside a service group.

/// The throwaway PostgreSQL the test command started (`FLASHSALE_TEST_POSTGRES`), if any.
public enum TestPostgres {
    public static let url = ProcessInfo.processInfo.environment["FLASHSALE_TEST_POSTGRES"]

    /// No test PostgreSQL: the test command did not start one.
    public struct NotConfigured: Error {}

    /// A configuration for a new, empty schema of the test database: every test has its own
    /// tables. Set-up and checks are not about deadlines: a generous limit, so that a loaded box
    /// does not fail them by one (a process under test gets its own, shorter one).
    public static func freshSchema(prefix: String = "t_") throws -> PostgresDatabase.Configuration {
        guard let url else { throw NotConfigured() }
        var configuration = try PostgresDatabase.Configuration(url: url)
        configuration.schema = prefix + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        configuration.operationTimeout = .seconds(60)
        return configuration
    }
}

extension PostgresDatabase {
    /// A database running (in a task of its own, which ``shutdown()`` ends and waits for) and
    /// open (migrations applied), as a process has it once its service group has started.
    public static func started(configuration: Configuration, logger: Logger = Logger(label: "flashsale.postgres")) async throws -> PostgresDatabase {
        let database = PostgresDatabase(configuration: configuration, logger: logger)
        Task { await database.run() }
        do {
            try await database.open()
        } catch {
            await database.shutdown()
            throw error
        }
        return database
    }
}

extension PostgresBackend {
    /// A backend on a database of its own, running and open; its ``shutdown()`` shuts the
    /// database down.
    public static func started(configuration: Configuration) async throws -> PostgresBackend {
        var configuration = configuration
        configuration.closesDatabase = true
        let database = try await PostgresDatabase.started(configuration: configuration.database)
        do {
            return try await PostgresBackend(database: database, configuration: configuration)
        } catch {
            await database.shutdown()
            throw error
        }
    }
}
