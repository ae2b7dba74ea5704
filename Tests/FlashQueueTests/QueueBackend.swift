import FlashAWS
import FlashCore
import FlashPostgres
import FlashTestSupport
import FlashQueue
import FlashSQLite
import Foundation
import Testing

/// A backend under the queue contract: makes queues and topics, and can be "restarted".
protocol QueueHarness: Sendable {
    func queue(_ name: String, _ attributes: QueueAttributes) async throws -> any MessageQueue
    func existingQueue(_ name: String) async throws -> any MessageQueue
    func topic(_ name: String) async throws -> any Topic
    /// Closes the store and opens it again, as a restarted process would.
    func reopened() async throws -> any QueueHarness
    func close() async throws
}

/// Every backend the contract runs against: SQLite always, PostgreSQL when the test command
/// started one (`FLASHSALE_TEST_POSTGRES`), SQS when it started a local AWS endpoint
/// (`FLASHSALE_TEST_AWS_ENDPOINT`, moto_server; see scripts/test).
enum QueueBackend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite
    case postgres
    case sqs

    static var allCases: [QueueBackend] {
        [.sqlite] + (TestPostgres.url == nil ? [] : [.postgres]) + (TestAWS.endpoint == nil ? [] : [.sqs])
    }

    var testDescription: String { rawValue }

    /// A fresh harness; its stores read `time` for "now" (SQS keeps its own time: not there).
    func makeHarness(time: TimeSource = .system) async throws -> any QueueHarness {
        switch self {
        case .sqlite: return try SQLiteHarness(path: TemporaryFile.path("queue"), time: time)
        case .postgres:
            var configuration = try TestPostgres.freshSchema()
            configuration.maxConnections = 6
            configuration.time = time
            return try await PostgresHarness(configuration: configuration)
        case .sqs: return SQSHarness()
        }
    }
}

struct PostgresHarness: QueueHarness {
    let configuration: PostgresDatabase.Configuration
    let database: PostgresDatabase

    init(configuration: PostgresDatabase.Configuration) async throws {
        self.configuration = configuration
        self.database = try await PostgresDatabase.started(configuration: configuration)
    }

    func queue(_ name: String, _ attributes: QueueAttributes) async throws -> any MessageQueue {
        try await database.createQueue(name, attributes: attributes)
    }

    func existingQueue(_ name: String) async throws -> any MessageQueue {
        try await database.queue(named: name)
    }

    func topic(_ name: String) async throws -> any Topic {
        try await database.createTopic(name)
    }

    func reopened() async throws -> any QueueHarness {
        await database.shutdown()
        return try await PostgresHarness(configuration: configuration)
    }

    func close() async throws {
        await database.shutdown()
    }
}

struct SQLiteHarness: QueueHarness {
    let path: String
    let time: TimeSource
    let database: SQLiteDatabase

    init(path: String, time: TimeSource = .system) throws {
        self.path = path
        self.time = time
        self.database = try SQLiteDatabase(path: path, time: time)
    }

    func queue(_ name: String, _ attributes: QueueAttributes) async throws -> any MessageQueue {
        try await database.createQueue(name, attributes: attributes)
    }

    func existingQueue(_ name: String) async throws -> any MessageQueue {
        try await database.queue(named: name)
    }

    func topic(_ name: String) async throws -> any Topic {
        try await database.createTopic(name)
    }

    func reopened() async throws -> any QueueHarness {
        try database.close()
        return try SQLiteHarness(path: path, time: time)
    }

    func close() async throws {
        try database.close()
    }
}

/// Runs `body` with a fresh harness of `backend`, closing it afterwards. Its stores read `time`
/// for "now": a test of a time-based rule passes a ``ManualTime``'s source and moves it.
func withHarness(_ backend: QueueBackend, time: TimeSource = .system, _ body: (any QueueHarness) async throws -> Void) async throws {
    let harness = try await backend.makeHarness(time: time)
    do {
        try await body(harness)
        try await harness.close()
    } catch {
        try? await harness.close()
        throw error
    }
}

/// AWS SQS through the local endpoint the test command started (moto_server): the same
/// contract, with SQS's whole-second durations (each test's sub-second ones round up to 1 s) and,
/// where SQS's semantics differ, the test says what SQS and AWS do instead.
struct SQSHarness: QueueHarness {
    /// This harness's queues are named `<prefix>-<name>`: the endpoint is shared by every test.
    let prefix: String
    let queues: SQSQueues

    init(prefix: String = "c" + UUID().uuidString.prefix(8).lowercased()) {
        self.prefix = prefix
        queues = SQSQueues(configuration: AWSConfiguration(
            region: "us-east-1", endpoint: TestAWS.endpoint,
            credentials: StaticCredentials(AWSCredentials(accessKeyID: "testing", secretAccessKey: "testing"))))
    }

    func queue(_ name: String, _ attributes: QueueAttributes) async throws -> any MessageQueue {
        var attributes = attributes
        // The dead-letter queue keeps the contract's name, under this harness's prefix.
        if let dead = attributes.deadLetterQueueName(for: name) { attributes.deadLetterQueue = "\(prefix)-\(dead)" }
        return try await queues.create("\(prefix)-\(name)", attributes: attributes)
    }

    func existingQueue(_ name: String) async throws -> any MessageQueue {
        do {
            return try await queues.open("\(prefix)-\(name)")
        } catch QueueError.queueDoesNotExist {
            throw QueueError.queueDoesNotExist(name)
        }
    }

    /// SNS topics are tested on their own (`SNSTopicTests`, and the topology end to end).
    func topic(_ name: String) async throws -> any Topic {
        throw QueueError.invalidAttribute("SNS topics are not part of the SQS harness")
    }

    /// SQS is a service: "reopening" is a new client for the same queues.
    func reopened() async throws -> any QueueHarness { SQSHarness(prefix: prefix) }

    func close() async throws {}
}
