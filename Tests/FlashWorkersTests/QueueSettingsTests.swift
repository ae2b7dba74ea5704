import FlashPostgres
import FlashQueue
import FlashServer
import Foundation
import Testing

/// The payments queue's settings are stored once for the fleet: the process that creates the
/// queue stores them, every later one works by them, and one given other values refuses to start
/// instead of enforcing its own lease, redrive or retention on the fleet's messages (issue: a
/// worker started with `--message-retention 1m` expired and failed what the API had accepted).
@Suite("Queue settings: one for the fleet")
struct QueueSettingsTests {
    enum Backend: String, CaseIterable, CustomTestStringConvertible {
        case sqlite, postgres
        var testDescription: String { rawValue }
    }

    static var backends: [Backend] {
        ProcessInfo.processInfo.environment["FLASHSALE_TEST_POSTGRES"] == nil ? [.sqlite] : Backend.allCases
    }

    /// A configuration for a new, empty database of `backend` (a file, or a schema of its own).
    static func fresh(_ backend: Backend) throws -> FlashConfiguration {
        var config = WorkerPoolTests.configuration(workers: 1, latency: .milliseconds(5))
        if backend == .postgres {
            var database = try PostgresDatabase.Configuration(url: try #require(ProcessInfo.processInfo.environment["FLASHSALE_TEST_POSTGRES"]))
            database.schema = "q_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            database.maxConnections = 4
            database.operationTimeout = .seconds(60)
            config.backend.postgres = database
        }
        return config
    }

    static func stating(_ config: FlashConfiguration, visibility: Duration? = nil, retention: Duration? = nil, maxReceives: Int? = nil,
                        reconfigure: Bool = false) -> FlashConfiguration {
        var copy = config
        copy.queue.stated = []
        if let visibility { copy.queue.visibilityTimeout = visibility; copy.queue.stated.insert(.visibilityTimeout) }
        if let retention { copy.queue.messageRetention = retention; copy.queue.stated.insert(.messageRetention) }
        if let maxReceives { copy.queue.maxReceives = maxReceives; copy.queue.stated.insert(.maxReceives) }
        copy.queue.reconfigure = reconfigure
        return copy
    }

    @Test(arguments: backends)
    func theFirstProcessStoresTheSettingsAndTheOthersWorkByThem(_ backend: Backend) async throws {
        let base = try Self.fresh(backend)
        // The API is started first, with a 2 s lease and 3 receives.
        let api = try await FlashSystem.open(Self.stating(base, visibility: .seconds(2), maxReceives: 3), logger: WorkerPoolTests.logger)
        try await api.close()

        // A worker with the defaults works by the stored settings: its pool leases for 2 s.
        let worker = try await FlashSystem.open(Self.stating(base), logger: WorkerPoolTests.logger)
        #expect(worker.configuration.queue.visibilityTimeout == .seconds(2))
        #expect(worker.configuration.queue.maxReceives == 3)
        #expect(worker.workers?.configuration.visibilityTimeout == .seconds(2))
        #expect(worker.backend.paymentsQueueSettings.maxReceiveCount == 3)
        try await worker.close()

        // One given a one-minute retention refuses to start, naming the setting and both values,
        // and stores nothing.
        do {
            let short = try await FlashSystem.open(Self.stating(base, retention: .seconds(60)), logger: WorkerPoolTests.logger)
            try await short.close()
            Issue.record("a process with another retention started")
        } catch let error as QueueSettingsMismatch {
            #expect(error.description.contains("--message-retention 1m here, 96h stored"), "\(error)")
            #expect(error.description.contains("--reconfigure-queue"))
        }
        // A process given the stored values explicitly starts.
        let same = try await FlashSystem.open(Self.stating(base, visibility: .seconds(2), maxReceives: 3), logger: WorkerPoolTests.logger)
        #expect(same.backend.paymentsQueueSettings.retention == .seconds(4 * 86_400))
        try await same.close()

        // --reconfigure-queue stores the new settings for every process that starts after.
        let reconfigured = try await FlashSystem.open(Self.stating(base, retention: .seconds(60), reconfigure: true), logger: WorkerPoolTests.logger)
        try await reconfigured.close()
        let next = try await FlashSystem.open(Self.stating(base), logger: WorkerPoolTests.logger)
        #expect(next.configuration.queue.messageRetention == .seconds(60))
        #expect(next.backend.paymentsQueueSettings.retention == .seconds(60))
        // Only what it was given: the lease and the receives stay as stored, not its defaults.
        #expect(next.configuration.queue.visibilityTimeout == .seconds(2))
        #expect(next.configuration.queue.maxReceives == 3)
        try await next.close()
    }
}
