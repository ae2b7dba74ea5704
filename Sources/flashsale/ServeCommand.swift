import ArgumentParser
import FlashCore
import FlashPayments
import FlashQueue
import FlashServer
import FlashSQLite
import Foundation
import Hummingbird
import Logging

/// `flashsale serve`: the API, the embedded database and the worker pool in one process.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the order API, the embedded queue and the payment workers in one process.",
        discussion: "Every option falls back to its FLASHSALE_… environment variable (e.g. FLASHSALE_PORT), then to its default.")

    @Option(help: "Address to listen on [FLASHSALE_HOST, default 127.0.0.1].") var host: String?
    @Option(help: "Port to listen on; 0 picks a free one [FLASHSALE_PORT, default 8080].") var port: String?
    @Option(help: "Database file [FLASHSALE_DATA, default ./flashsale.db].") var data: String?
    @Option(help: "Payment workers; 0 accepts orders without processing them [FLASHSALE_WORKERS, default 10].") var workers: String?
    @Option(help: "Time per charge: 3s, 30ms, 20ms..40ms (uniform) or exp:3s [FLASHSALE_PAYMENT_LATENCY, default 3s].") var paymentLatency: String?
    @Option(help: "Fraction of charges declined, 0...1 [FLASHSALE_PAYMENT_DECLINE_RATE, default 0].") var paymentDeclineRate: String?
    @Option(help: "Fraction of charge attempts failing transiently, 0...1 [FLASHSALE_PAYMENT_ERROR_RATE, default 0].") var paymentErrorRate: String?
    @Option(help: "Charges the gateway runs at once; 0 is no limit [FLASHSALE_PAYMENT_CONCURRENCY, default 0].") var paymentConcurrency: String?
    @Option(help: "Checkout lanes of the sync endpoint [FLASHSALE_SYNC_LANES, default 1].") var syncLanes: String?
    @Option(help: "Longest a sync customer waits for a lane [FLASHSALE_SYNC_TIMEOUT, default 10s].") var syncTimeout: String?
    @Option(help: "Lease of each delivered payment message [FLASHSALE_VISIBILITY_TIMEOUT, default 30s].") var visibilityTimeout: String?
    @Option(help: "Deliveries before a message is dead-lettered [FLASHSALE_MAX_RECEIVES, default 5].") var maxReceives: String?
    @Option(help: "How long a payment message is kept before it is dropped, up to 14d; its order is then settled [FLASHSALE_MESSAGE_RETENTION, default 4d].") var messageRetention: String?
    @Option(help: "How long shutdown waits for charges in progress [FLASHSALE_SHUTDOWN_DEADLINE, default 10s].") var shutdownDeadline: String?
    @Option(help: "First retry backoff after a transient payment error [FLASHSALE_RETRY_BACKOFF, default 500ms].") var retryBackoff: String?
    @Option(help: "Time between the reconciler's sweeps for orders nothing else will settle [FLASHSALE_RECONCILE_INTERVAL, default 1s].") var reconcileInterval: String?
    @Option(help: "Bearer token for admin routes; unset means loopback clients only [FLASHSALE_ADMIN_TOKEN].") var adminToken: String?
    @Option(help: "The product sold by POST /buy [FLASHSALE_FLASH_PRODUCT, default iphone_16].") var flashProduct: String?
    @Flag(help: "Refuse items whose product is not in the catalog [FLASHSALE_STRICT_CATALOG].") var strictCatalog = false
    @Option(help: "SQLite synchronous mode: FULL (survives power loss) or NORMAL (survives kill -9 only) [FLASHSALE_SYNCHRONOUS, default FULL].") var synchronous: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error [FLASHSALE_LOG_LEVEL, default info].") var logLevel: String?

    func resolve() throws -> ServerConfiguration {
        var config = ServerConfiguration()
        config.host = Settings.string(host, env: "FLASHSALE_HOST", default: config.host)
        config.port = try Settings.int(port, env: "FLASHSALE_PORT", default: config.port, range: 0...65535)
        config.dataPath = Settings.string(data, env: "FLASHSALE_DATA", default: config.dataPath)
        config.workers = try Settings.int(workers, env: "FLASHSALE_WORKERS", default: config.workers, range: 0...100_000)
        if let text = Settings.value(paymentLatency, env: "FLASHSALE_PAYMENT_LATENCY") {
            guard let model = LatencyModel(parsing: text) else {
                throw ValidationError("--payment-latency must be like 3s, 30ms, 20ms..40ms or exp:3s, not '\(text)'")
            }
            guard model.longest <= Self.longest else {
                throw ValidationError("--payment-latency must be at most \(Self.longest.shortDescription), not '\(text)'")
            }
            config.payment.latency = model
        }
        config.payment.declineRate = try Settings.double(paymentDeclineRate, env: "FLASHSALE_PAYMENT_DECLINE_RATE", default: 0, range: 0...1)
        config.payment.transientErrorRate = try Settings.double(paymentErrorRate, env: "FLASHSALE_PAYMENT_ERROR_RATE", default: 0, range: 0...1)
        let concurrency = try Settings.int(paymentConcurrency, env: "FLASHSALE_PAYMENT_CONCURRENCY", default: 0, range: 0...1_000_000)
        config.payment.concurrencyLimit = concurrency == 0 ? nil : concurrency
        config.syncLanes = try Settings.int(syncLanes, env: "FLASHSALE_SYNC_LANES", default: config.syncLanes, range: 1...100_000)
        config.syncTimeout = try Settings.duration(syncTimeout, env: "FLASHSALE_SYNC_TIMEOUT", default: config.syncTimeout,
                                                   range: .milliseconds(1)...Self.longest)
        // A lease is stored in whole milliseconds: a shorter one would be none at all.
        config.visibilityTimeout = try Settings.duration(visibilityTimeout, env: "FLASHSALE_VISIBILITY_TIMEOUT", default: config.visibilityTimeout,
                                                         range: .milliseconds(1)...QueueLimits.maxVisibilityTimeout)
        config.maxReceives = try Settings.int(maxReceives, env: "FLASHSALE_MAX_RECEIVES", default: config.maxReceives, range: 1...1000)
        config.messageRetention = try Settings.duration(messageRetention, env: "FLASHSALE_MESSAGE_RETENTION", default: config.messageRetention,
                                                        range: .milliseconds(1)...QueueLimits.maxRetention)
        config.shutdownDeadline = try Settings.duration(shutdownDeadline, env: "FLASHSALE_SHUTDOWN_DEADLINE", default: config.shutdownDeadline,
                                                        range: .zero...Self.longest)
        config.retryBackoff = try Settings.duration(retryBackoff, env: "FLASHSALE_RETRY_BACKOFF", default: config.retryBackoff,
                                                    range: .zero...Self.longest)
        config.reconcileInterval = try Settings.duration(reconcileInterval, env: "FLASHSALE_RECONCILE_INTERVAL", default: config.reconcileInterval,
                                                         range: .milliseconds(10)...Self.longest)
        config.adminToken = Settings.value(adminToken, env: "FLASHSALE_ADMIN_TOKEN")
        config.flashProduct = Settings.string(flashProduct, env: "FLASHSALE_FLASH_PRODUCT", default: config.flashProduct)
        config.strictCatalog = Settings.flag(strictCatalog, env: "FLASHSALE_STRICT_CATALOG")
        let mode = Settings.string(synchronous, env: "FLASHSALE_SYNCHRONOUS", default: "FULL").uppercased()
        guard let sync = SQLiteDatabase.Synchronous(rawValue: mode) else { throw ValidationError("--synchronous must be FULL or NORMAL") }
        config.synchronous = sync
        return config
    }

    /// The longest any duration setting of `serve` may be (but the lease, which SQS caps at 12 h).
    static let longest: Duration = .seconds(86_400)

    func run() async throws {
        let config = try resolve()
        let levelText = Settings.string(logLevel, env: "FLASHSALE_LOG_LEVEL", default: "info")
        guard let level = Logger.Level(rawValue: levelText) else { throw ValidationError("unknown log level '\(levelText)'") }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "flashsale")
        logger.logLevel = level
        let system = try await EmbeddedSystem.open(config, logger: logger)
        logger.info("flashsale starting", metadata: [
            "data": "\(config.dataPath)", "workers": "\(config.workers)",
            "payment_latency": "\(config.payment.latency)", "sync_lanes": "\(config.syncLanes)",
        ])
        let app = system.application(logger: logger) { port in
            // One line on stdout that scripts (and the tests) wait for.
            FileHandle.standardOutput.write(Data("flashsale listening on http://\(config.host):\(port)\n".utf8))
        }
        try await app.runService()
        try system.database.close()
    }
}
