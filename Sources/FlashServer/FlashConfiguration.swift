import FlashAPI
import FlashAWS
import FlashGateway
import FlashPayments
import FlashPostgres
import FlashQueue
import FlashSQLite
import FlashTelemetry
import FlashWorkers

/// Everything a flashsale process can be told, one type per concern. `serve` and `worker` read
/// the same types from the same flags and `FLASHSALE_…` variables (see the CLI's option groups).
public struct FlashConfiguration: Sendable {
    public var http = HTTPConfiguration()
    public var backend = BackendConfiguration()
    public var queue = QueueConfiguration()
    public var payment = SimulatedPaymentGateway.Configuration(latency: .fixed(.seconds(3)))
    /// Charge through a gateway over HTTP (`--payment-url`) instead of the in-process simulator.
    public var paymentURL: HTTPPaymentGateway.Configuration?
    public var workers = WorkerConfiguration()
    public var api = APIConfiguration()
    /// The payments queue on AWS SQS (`--queue sqs`) instead of the backend's own; nil: the backend's.
    public var sqs: SQSConfiguration?

    public init() {}
}

/// The seeds' AWS topology: orders go through a transactional outbox in the backend to an SNS
/// topic (or straight to the SQS queue), and workers read the SQS queue.
public struct SQSConfiguration: Sendable {
    /// Region, endpoint (`--aws-endpoint`) and credentials.
    public var aws: AWSConfiguration
    /// The queue the workers read (`--queue-url`).
    public var queueURL: String
    /// The topic the relay publishes to (`--topic-arn`); nil: it sends to the queue itself.
    public var topicARN: String?
    /// Publishing batches the outbox relay keeps in flight.
    public var relayConcurrency = 8

    public init(aws: AWSConfiguration, queueURL: String, topicARN: String? = nil) {
        self.aws = aws
        self.queueURL = queueURL
        self.topicARN = topicARN
    }
}

/// Where a process listens.
public struct HTTPConfiguration: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port.
    public var port = 8080
    /// What clients' connections may hold: idle and body timeouts, the most open at once.
    public var limits = ConnectionLimits()

    public init() {}
}

/// Which backend, and how to open it: the SQLite file (the default), or PostgreSQL when
/// ``postgres`` is set.
public struct BackendConfiguration: Sendable {
    /// The database file.
    public var path = "./flashsale.db"
    /// PostgreSQL (`--database postgres://…`): used instead of the file when set.
    public var postgres: PostgresDatabase.Configuration?
    public var synchronous: SQLiteDatabase.Synchronous = .full
    /// Refuse items whose product is not in the catalog.
    public var strictCatalog = false
    /// How often a process looks for other processes' commits, to wake its idle receivers.
    public var wakePoll: Duration = .milliseconds(50)
    /// How long a starting process keeps trying to reach its database (and, with SQS, AWS) when
    /// it cannot be reached (a server starting, restarting or stalled), before it gives up; zero
    /// gives up at the first failure. A server that refuses the process (no such database, a
    /// wrong password, TLS it does not offer) fails it at once; a wrong host or port looks like
    /// a server that is down, and is waited for.
    public var startupWait: Duration = .seconds(60)

    public init() {}

    /// Uses PostgreSQL at `url` (`postgres://user:password@host:port/database?…`) instead of the
    /// file; throws on a malformed URL.
    public mutating func usePostgres(url: String) throws {
        postgres = try PostgresDatabase.Configuration(url: url)
    }

    /// Sets the file's durability by its name, `FULL` or `NORMAL` (any case); false for another.
    public mutating func setSynchronous(named name: String) -> Bool {
        guard let mode = SQLiteDatabase.Synchronous(rawValue: name.uppercased()) else { return false }
        synchronous = mode
        return true
    }

    /// Where the data lives, for logs and messages: the URL without its password, or the file.
    public var location: String { postgres?.redacted ?? path }
}

/// The payments queue's settings.
public struct QueueConfiguration: Sendable {
    /// The lease of each delivered payment message.
    public var visibilityTimeout: Duration = .seconds(30)
    /// Deliveries before a message is dead-lettered.
    public var maxReceives = 5
    /// How long a payment message is kept before it is dropped (SQS's MessageRetentionPeriod).
    public var messageRetention: Duration = .seconds(4 * 86_400)
    /// How long an order whose message was dead-lettered stays open for an operator to redrive
    /// it (from when its message was found in the dead-letter queue) before the reconciler settles it; zero settles
    /// it at once. Each process's reconciler keeps its own: give the fleet the same.
    public var deadLetterHold: Duration = .zero
    /// The settings this process was given (by flag or variable), not left at their defaults.
    public var stated: Set<QueueSetting> = []
    /// Store these settings for the whole fleet, replacing the stored ones.
    public var reconfigure = false

    public init() {}

    /// One of the payments queue's settings, by its flag.
    public enum QueueSetting: String, Sendable, Hashable, CaseIterable {
        case visibilityTimeout = "--visibility-timeout"
        case maxReceives = "--max-receives"
        case messageRetention = "--message-retention"
    }

    /// The settings of a payments queue that exists are stored with it, one for the whole
    /// fleet: this configuration with the stored values. Throws ``QueueSettingsMismatch`` when
    /// this process was given a value that differs from the stored one (it would otherwise
    /// enforce another lease, redrive or retention than the rest of the fleet).
    public func adopting(_ stored: QueueAttributes) throws -> QueueConfiguration {
        // Compared as stored: whole milliseconds.
        let compared: [(QueueSetting, here: String, stored: String, same: Bool)] = [
            (.visibilityTimeout, visibilityTimeout.shortDescription, stored.visibilityTimeout.shortDescription,
             visibilityTimeout.asMilliseconds == stored.visibilityTimeout.asMilliseconds),
            (.maxReceives, "\(maxReceives)", "\(stored.maxReceiveCount)", maxReceives == stored.maxReceiveCount),
            (.messageRetention, messageRetention.shortDescription, stored.retention.shortDescription,
             messageRetention.asMilliseconds == stored.retention.asMilliseconds),
        ]
        let differences = compared.filter { !$0.same }
        let refused = differences.filter { stated.contains($0.0) }
        if !refused.isEmpty {
            throw QueueSettingsMismatch(description: "the payments queue's settings are stored in the database, one for the whole fleet, "
                + "and this process was given others: "
                + refused.map { "\($0.0.rawValue) \($0.here) here, \($0.stored) stored" }.joined(separator: "; ")
                + ". Start it without \(refused.count == 1 ? "that option" : "those options") to use the stored settings, or add "
                + "--reconfigure-queue (FLASHSALE_RECONFIGURE_QUEUE=1) to store this process's settings for every process "
                + "(processes already running keep theirs until they restart).")
        }
        var copy = self
        copy.visibilityTimeout = stored.visibilityTimeout
        copy.maxReceives = stored.maxReceiveCount
        copy.messageRetention = stored.retention
        return copy
    }

    /// The stored settings with the ones this process was given in their place: what
    /// `--reconfigure-queue` stores (a setting it was not given keeps its stored value).
    public func merged(into stored: QueueAttributes) -> QueueConfiguration {
        var copy = self
        copy.visibilityTimeout = stated.contains(.visibilityTimeout) ? visibilityTimeout : stored.visibilityTimeout
        copy.maxReceives = stated.contains(.maxReceives) ? maxReceives : stored.maxReceiveCount
        copy.messageRetention = stated.contains(.messageRetention) ? messageRetention : stored.retention
        return copy
    }
}

/// A process was given payments-queue settings that differ from the ones stored for the fleet.
public struct QueueSettingsMismatch: Error, CustomStringConvertible {
    public var description: String
}

/// The worker pool and the reconciler.
public struct WorkerConfiguration: Sendable {
    /// Payment workers in this process (0: none); with ``scaling``, the pool's minimum.
    public var count = 10
    /// Elastic sizing (`--workers auto`): nil for a fixed pool of ``count``. Its expected
    /// service time is set from the payment gateway's expected latency when the system is composed.
    public var scaling: WorkerScaler.Configuration?
    /// How long shutdown waits for charges in progress.
    public var shutdownDeadline: Duration = .seconds(10)
    /// First retry backoff after a transient payment error.
    public var retryBackoff: Duration = .milliseconds(500)
    /// Time between the reconciler's sweeps.
    public var reconcileInterval: Duration = .seconds(1)

    public init() {}
}

/// The order API.
public struct APIConfiguration: Sendable {
    /// Checkout lanes of the sync endpoint.
    public var syncLanes = 1
    /// How long a sync customer waits at most.
    public var syncTimeout: Duration = .seconds(10)
    /// How long an order may wait for the store before it is refused (503 overloaded, nothing stored).
    public var admissionDeadline: Duration = .seconds(2)
    /// The secret admin requests must bear (`Authorization: Bearer …`); nil: read from
    /// ``adminTokenFile``, else generated (``AdminSecret``).
    public var adminToken: String?
    /// A file holding the admin secret (its first line).
    public var adminTokenFile: String?
    /// Where the admin secret came from (set by ``FlashSystem/open(_:role:logger:)``, for the
    /// start-up line; never the secret).
    public var adminTokenSource: String?
    /// The product sold by `POST /buy`.
    public var flashProduct = "iphone_16"

    public init() {}
}
