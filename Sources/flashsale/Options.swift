import ArgumentParser
import FlashAPI
import FlashCore
import FlashGateway
import Foundation
import FlashPayments
import FlashQueue
import FlashServer
import FlashWorkers
import FlashTelemetry
import Logging

// One option group per concern of ``FlashConfiguration``, shared by `serve` and `worker` (and
// the commands to come). Every option falls back to its FLASHSALE_… variable, then its default
// (see ``Settings``).

/// The longest any duration setting may be (but the lease, which SQS caps at 12 h).
let longestSetting: Duration = .seconds(86_400)

/// `--data`, `--synchronous`, `--strict-catalog` and the payments queue's settings.
struct BackendOptions: ParsableArguments {
    @Option(help: "Database file, shared by every process of the fleet on this host [FLASHSALE_DATA, default ./flashsale.db].") var data: String?
    @Option(help: "PostgreSQL instead of the file, for processes on many machines: postgres://user:password@host:5432/db[?schema=name&sslmode=disable|prefer|require&pool=16] [FLASHSALE_DATABASE].") var database: String?
    @Option(help: "SQLite synchronous mode: FULL (survives power loss) or NORMAL (survives kill -9 only) [FLASHSALE_SYNCHRONOUS, default FULL].") var synchronous: String?
    @Flag(help: "Refuse items whose product is not in the catalog [FLASHSALE_STRICT_CATALOG].") var strictCatalog = false
    @Option(parsing: .unconditional, help: "Lease of each delivered payment message [FLASHSALE_VISIBILITY_TIMEOUT, default 30s].") var visibilityTimeout: String?
    @Option(parsing: .unconditional, help: "Deliveries before a message is dead-lettered [FLASHSALE_MAX_RECEIVES, default 5].") var maxReceives: String?
    @Option(parsing: .unconditional, help: "How long a payment message is kept before it is dropped, up to 14d; its order is then settled [FLASHSALE_MESSAGE_RETENTION, default 4d].") var messageRetention: String?
    @Option(parsing: .unconditional, help: "How long an order whose payment message was dead-lettered stays open, from when its message is found in the dead-letter queue, for an operator to redrive it (console, POST /admin/dead-letters/…) before it is settled; give every process the same [FLASHSALE_DEAD_LETTER_HOLD, default 0s: settled at once].") var deadLetterHold: String?
    @Flag(help: "Store this process's --visibility-timeout, --max-receives and --message-retention for the whole fleet, replacing the stored ones (otherwise the stored ones hold, and a process given others refuses to start) [FLASHSALE_RECONFIGURE_QUEUE].") var reconfigureQueue = false
    @Option(parsing: .unconditional, help: "How often to look for other processes' commits on the file, to wake idle workers; longer costs less CPU and delays pickup [FLASHSALE_WAKE_POLL, default 50ms].") var wakePoll: String?
    @Option(parsing: .unconditional, help: "How long a starting process keeps trying to reach a database that does not answer (starting, restarting, stalled) before it exits; 0s exits at once [FLASHSALE_STARTUP_WAIT, default 60s].") var startupWait: String?

    func resolve(into config: inout FlashConfiguration) throws {
        config.backend.path = Settings.string(data, env: "FLASHSALE_DATA", default: config.backend.path)
        if let url = Settings.value(database, env: "FLASHSALE_DATABASE"), !url.isEmpty {
            do {
                try config.backend.usePostgres(url: url)
            } catch {
                throw ValidationError("--database: \(error)")
            }
        }
        if config.backend.postgres == nil { try Self.checkDataPath(config.backend.path, flag: Settings.source(data, env: "FLASHSALE_DATA")) }
        guard config.backend.setSynchronous(named: Settings.string(synchronous, env: "FLASHSALE_SYNCHRONOUS", default: "FULL")) else {
            throw ValidationError("--synchronous must be FULL or NORMAL")
        }
        config.backend.strictCatalog = Settings.flag(strictCatalog, env: "FLASHSALE_STRICT_CATALOG")
        // A lease is stored in whole milliseconds: a shorter one would be none at all.
        config.queue.visibilityTimeout = try Settings.duration(visibilityTimeout, env: "FLASHSALE_VISIBILITY_TIMEOUT", default: config.queue.visibilityTimeout,
                                                               range: .milliseconds(1)...QueueLimits.maxVisibilityTimeout)
        config.queue.maxReceives = try Settings.int(maxReceives, env: "FLASHSALE_MAX_RECEIVES", default: config.queue.maxReceives, range: 1...1000)
        config.backend.wakePoll = try Settings.duration(wakePoll, env: "FLASHSALE_WAKE_POLL", default: config.backend.wakePoll,
                                                        range: .milliseconds(1)...QueueLimits.maxWait)
        config.backend.startupWait = try Settings.duration(startupWait, env: "FLASHSALE_STARTUP_WAIT", default: config.backend.startupWait,
                                                           range: .zero...(.seconds(3600)))
        config.queue.messageRetention = try Settings.duration(messageRetention, env: "FLASHSALE_MESSAGE_RETENTION", default: config.queue.messageRetention,
                                                              range: .milliseconds(1)...QueueLimits.maxRetention)
        config.queue.deadLetterHold = try Settings.duration(deadLetterHold, env: "FLASHSALE_DEAD_LETTER_HOLD", default: config.queue.deadLetterHold,
                                                            range: .zero...longestSetting)
        config.queue.stated = Set([
            (QueueConfiguration.QueueSetting.visibilityTimeout, Settings.value(visibilityTimeout, env: "FLASHSALE_VISIBILITY_TIMEOUT")),
            (.maxReceives, Settings.value(maxReceives, env: "FLASHSALE_MAX_RECEIVES")),
            (.messageRetention, Settings.value(messageRetention, env: "FLASHSALE_MESSAGE_RETENTION")),
        ].compactMap { $0.1 == nil ? nil : $0.0 })
        config.queue.reconfigure = Settings.flag(reconfigureQueue, env: "FLASHSALE_RECONFIGURE_QUEUE")
    }
}

extension BackendOptions {
    /// Refuses a database path whose directory is missing (or that is a directory) before
    /// anything is created beside it (the admin secret's file is made there first).
    static func checkDataPath(_ path: String, flag: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw ValidationError("\(flag) \(path) is a directory; give the path of a database file in it, such as \((path as NSString).appendingPathComponent("flashsale.db"))")
        }
        let directory = (path as NSString).deletingLastPathComponent
        guard !directory.isEmpty else { return }
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("\(flag) \(path): the directory \(directory) does not exist; create it first (mkdir -p \(directory)) or give another path")
        }
    }
}

/// The simulated payment gateway.
struct PaymentOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Time per charge: 3s, 30ms, 20ms..40ms (uniform) or exp:3s [FLASHSALE_PAYMENT_LATENCY, default 3s].") var paymentLatency: String?
    @Option(parsing: .unconditional, help: "Fraction of charges declined, 0...1 [FLASHSALE_PAYMENT_DECLINE_RATE, default 0].") var paymentDeclineRate: String?
    @Option(parsing: .unconditional, help: "Fraction of charge attempts failing transiently, 0...1 [FLASHSALE_PAYMENT_ERROR_RATE, default 0].") var paymentErrorRate: String?
    @Option(parsing: .unconditional, help: "Charges the gateway runs at once, per process; 0 is no limit [FLASHSALE_PAYMENT_CONCURRENCY, default 0].") var paymentConcurrency: String?
    @Option(help: "Charge through this payment gateway over HTTP (a `flashsale gateway`) instead of the in-process simulator; the --payment-* simulator options then do not apply [FLASHSALE_PAYMENT_URL].") var paymentURL: String?
    @Option(parsing: .unconditional, help: "With --payment-url: how long one charge may take before it is retried [FLASHSALE_PAYMENT_TIMEOUT, default 30s].") var paymentTimeout: String?
    @Option(help: "With --payment-url: a file holding the gateway's secret (first line; owner-only) [FLASHSALE_PAYMENT_TOKEN_FILE; or the secret itself in FLASHSALE_GATEWAY_TOKEN; default: flashsale.gateway-token beside --data].") var paymentTokenFile: String?

    func resolve(into config: inout FlashConfiguration) throws {
        if let text = Settings.value(paymentLatency, env: "FLASHSALE_PAYMENT_LATENCY") {
            guard let model = LatencyModel(parsing: text) else {
                throw ValidationError("\(Settings.source(paymentLatency, env: "FLASHSALE_PAYMENT_LATENCY")) must be like 3s, 30ms, 20ms..40ms or exp:3s (every duration with a unit: us, ms, s, m, h), not '\(text)'")
            }
            guard model.longest <= longestSetting else {
                throw ValidationError("--payment-latency must be at most \(longestSetting.shortDescription), not '\(text)'")
            }
            config.payment.latency = model
        }
        config.payment.declineRate = try Settings.double(paymentDeclineRate, env: "FLASHSALE_PAYMENT_DECLINE_RATE", default: 0, range: 0...1)
        config.payment.transientErrorRate = try Settings.double(paymentErrorRate, env: "FLASHSALE_PAYMENT_ERROR_RATE", default: 0, range: 0...1)
        let concurrency = try Settings.int(paymentConcurrency, env: "FLASHSALE_PAYMENT_CONCURRENCY", default: 0, range: 0...1_000_000)
        config.payment.concurrencyLimit = concurrency == 0 ? nil : concurrency
        if let url = Settings.value(paymentURL, env: "FLASHSALE_PAYMENT_URL"), !url.isEmpty {
            guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil else {
                throw ValidationError("--payment-url must be an http(s) URL, not '\(url)'")
            }
            let timeout = try Settings.duration(paymentTimeout, env: "FLASHSALE_PAYMENT_TIMEOUT", default: .seconds(30), range: .seconds(1)...longestSetting)
            // The secret through the environment or a file only: a flag would show it in ps.
            let secret = try SharedSecret.resolve(
                "gateway token", token: ProcessInfo.processInfo.environment["FLASHSALE_GATEWAY_TOKEN"],
                file: Settings.value(paymentTokenFile, env: "FLASHSALE_PAYMENT_TOKEN_FILE"),
                defaultFile: GatewayCommand.defaultTokenFile(beside: config.backend.path), generate: false,
                hint: "set FLASHSALE_GATEWAY_TOKEN or --payment-token-file")
            guard let secret else {
                throw ValidationError("--payment-url needs the gateway's secret (what `flashsale gateway` printed): set FLASHSALE_GATEWAY_TOKEN, or --payment-token-file FILE, or put it in \(GatewayCommand.defaultTokenFile(beside: config.backend.path))")
            }
            config.paymentURL = HTTPPaymentGateway.Configuration(baseURL: url, token: secret.token, requestTimeout: timeout,
                                                                 expectedLatency: config.payment.latency.mean)
        }
    }
}

/// The worker pool and the reconciler.
struct WorkerOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Payment workers in this process, or 'auto' to size the pool from the queue (Little's law) [FLASHSALE_WORKERS, default 10; serve: 0 runs the API only].") var workers: String?
    @Option(parsing: .unconditional, help: "With --workers auto: fewest workers in this process [FLASHSALE_MIN_WORKERS, default 1].") var minWorkers: String?
    @Option(parsing: .unconditional, help: "With --workers auto: most workers in this process [FLASHSALE_MAX_WORKERS, default 1000].") var maxWorkers: String?
    @Option(parsing: .unconditional, help: "With --workers auto: the longest an order should wait before its charge starts [FLASHSALE_TARGET_WAIT, default 5s].") var targetWait: String?
    @Option(parsing: .unconditional, help: "With --workers auto: the pool shrinks only to the largest need seen over this window [FLASHSALE_SCALE_DOWN_WINDOW, default 30s].") var scaleDownWindow: String?
    @Option(parsing: .unconditional, help: "How long shutdown waits for charges in progress [FLASHSALE_SHUTDOWN_DEADLINE, default 10s].") var shutdownDeadline: String?
    @Option(parsing: .unconditional, help: "First retry backoff after a transient payment error [FLASHSALE_RETRY_BACKOFF, default 500ms].") var retryBackoff: String?
    @Option(parsing: .unconditional, help: "Time between the reconciler's sweeps for orders nothing else will settle [FLASHSALE_RECONCILE_INTERVAL, default 1s].") var reconcileInterval: String?

    func resolve(into config: inout FlashConfiguration, minimumWorkers: Int) throws {
        if Settings.value(workers, env: "FLASHSALE_WORKERS")?.lowercased() == "auto" {
            var scaling = config.workers.scaling ?? WorkerScaler.Configuration()
            scaling.minWorkers = try Settings.int(minWorkers, env: "FLASHSALE_MIN_WORKERS", default: scaling.minWorkers, range: 1...100_000)
            scaling.maxWorkers = try Settings.int(maxWorkers, env: "FLASHSALE_MAX_WORKERS", default: scaling.maxWorkers, range: 1...100_000)
            guard scaling.minWorkers <= scaling.maxWorkers else {
                throw ValidationError("--min-workers (\(scaling.minWorkers)) must not be above --max-workers (\(scaling.maxWorkers))")
            }
            scaling.targetWait = try Settings.duration(targetWait, env: "FLASHSALE_TARGET_WAIT", default: scaling.targetWait,
                                                       range: .milliseconds(10)...longestSetting)
            scaling.scaleDownWindow = try Settings.duration(scaleDownWindow, env: "FLASHSALE_SCALE_DOWN_WINDOW", default: scaling.scaleDownWindow,
                                                            range: .zero...longestSetting)
            config.workers.scaling = scaling
            config.workers.count = scaling.minWorkers
        } else {
            for (flag, env) in [(minWorkers, "FLASHSALE_MIN_WORKERS"), (maxWorkers, "FLASHSALE_MAX_WORKERS"),
                                (targetWait, "FLASHSALE_TARGET_WAIT"), (scaleDownWindow, "FLASHSALE_SCALE_DOWN_WINDOW")]
            where flag != nil {
                throw ValidationError("\(Settings.flagName(env)) needs --workers auto")
            }
            config.workers.count = try Settings.int(workers, env: "FLASHSALE_WORKERS", default: config.workers.count, range: minimumWorkers...100_000)
        }
        config.workers.shutdownDeadline = try Settings.duration(shutdownDeadline, env: "FLASHSALE_SHUTDOWN_DEADLINE", default: config.workers.shutdownDeadline,
                                                                range: .zero...longestSetting)
        config.workers.retryBackoff = try Settings.duration(retryBackoff, env: "FLASHSALE_RETRY_BACKOFF", default: config.workers.retryBackoff,
                                                            range: .zero...longestSetting)
        config.workers.reconcileInterval = try Settings.duration(reconcileInterval, env: "FLASHSALE_RECONCILE_INTERVAL", default: config.workers.reconcileInterval,
                                                                 range: .milliseconds(10)...longestSetting)
    }
}

/// What clients' connections may hold (``ConnectionLimits``).
struct ConnectionOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Close a connection with no request in progress for this long: idle keep-alive, or a request head sent too slowly [FLASHSALE_IDLE_TIMEOUT, default 30s].") var idleTimeout: String?
    @Option(parsing: .unconditional, help: "Close a connection whose request body has not arrived this long after its head [FLASHSALE_BODY_TIMEOUT, default 10s].") var bodyTimeout: String?
    @Option(parsing: .unconditional, help: "Connections open at once; more are closed as soon as they are accepted [FLASHSALE_MAX_CONNECTIONS, default 10000, at most the open-file limit less 256].") var maxConnections: String?

    func resolve(into config: inout FlashConfiguration) throws {
        config.http.limits = try resolve(config.http.limits)
    }

    /// `defaults` with the flags given (or their variables) applied.
    func resolve(_ defaults: ConnectionLimits = ConnectionLimits()) throws -> ConnectionLimits {
        var limits = defaults
        limits.idleTimeout = try Settings.duration(idleTimeout, env: "FLASHSALE_IDLE_TIMEOUT", default: limits.idleTimeout, range: .milliseconds(100)...longestSetting)
        limits.bodyTimeout = try Settings.duration(bodyTimeout, env: "FLASHSALE_BODY_TIMEOUT", default: limits.bodyTimeout, range: .milliseconds(100)...longestSetting)
        let ceiling = ConnectionLimits.connectionCeiling()
        limits.maxConnections = try Settings.int(maxConnections, env: "FLASHSALE_MAX_CONNECTIONS", default: min(limits.maxConnections, ceiling), range: 1...ceiling)
        return limits
    }
}

/// The order API: checkout lanes, admin access, the seed engine's product.
struct APIOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Checkout lanes of the sync endpoint [FLASHSALE_SYNC_LANES, default 1].") var syncLanes: String?
    @Option(parsing: .unconditional, help: "Longest a sync customer waits for a lane [FLASHSALE_SYNC_TIMEOUT, default 10s].") var syncTimeout: String?
    @Option(parsing: .unconditional, help: "Longest an order waits for the store before it is refused with 503 overloaded, nothing stored [FLASHSALE_ADMISSION_DEADLINE, default 2s].") var admissionDeadline: String?
    @Option(help: "The secret admin routes need (Authorization: Bearer …); on the command line it shows in ps, so prefer FLASHSALE_ADMIN_TOKEN or --admin-token-file [FLASHSALE_ADMIN_TOKEN; default: generated into flashsale.admin-token beside --data, owner-only].") var adminToken: String?
    @Option(help: "A file holding the admin secret (first line; owner-only) [FLASHSALE_ADMIN_TOKEN_FILE].") var adminTokenFile: String?
    @Option(help: "The product sold by POST /buy [FLASHSALE_FLASH_PRODUCT, default iphone_16].") var flashProduct: String?

    func resolve(into config: inout FlashConfiguration) throws {
        config.api.syncLanes = try Settings.int(syncLanes, env: "FLASHSALE_SYNC_LANES", default: config.api.syncLanes, range: 1...100_000)
        config.api.syncTimeout = try Settings.duration(syncTimeout, env: "FLASHSALE_SYNC_TIMEOUT", default: config.api.syncTimeout,
                                                       range: .milliseconds(1)...longestSetting)
        config.api.admissionDeadline = try Settings.duration(admissionDeadline, env: "FLASHSALE_ADMISSION_DEADLINE", default: config.api.admissionDeadline,
                                                             range: .milliseconds(10)...longestSetting)
        config.api.adminToken = Settings.value(adminToken, env: "FLASHSALE_ADMIN_TOKEN")
        config.api.adminTokenFile = Settings.value(adminTokenFile, env: "FLASHSALE_ADMIN_TOKEN_FILE")
        config.api.flashProduct = Settings.string(flashProduct, env: "FLASHSALE_FLASH_PRODUCT", default: config.api.flashProduct)
    }
}

/// `--log-level` and `--log-format`.
struct LogOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical [FLASHSALE_LOG_LEVEL, default info].") var logLevel: String?
    @Option(help: "Log format: text (for a terminal) or json (one object per line, for log shippers) [FLASHSALE_LOG_FORMAT, default text].") var logFormat: String?

    /// Bootstraps logging to standard error; returns the process's logger.
    func bootstrap() throws -> Logger {
        let levelText = Settings.string(logLevel, env: "FLASHSALE_LOG_LEVEL", default: "info").lowercased()
        guard let level = Logger.Level(rawValue: levelText) else {
            throw ValidationError("--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")), not '\(levelText)'")
        }
        let formatText = Settings.string(logFormat, env: "FLASHSALE_LOG_FORMAT", default: "text").lowercased()
        guard let format = LogFormat(rawValue: formatText) else {
            throw ValidationError("--log-format must be text or json, not '\(formatText)'")
        }
        return format.bootstrap(level: level)
    }
}

extension FlashConfiguration {
    /// What the start-up log line reports: what this process really runs with (the gateway's
    /// URL when charges go over HTTP, not the simulator's settings that then do not apply).
    var startupMetadata: Logger.Metadata {
        var metadata: Logger.Metadata = [
            "data": "\(backend.location)",
            "queue": "\(sqs.map { "sqs \($0.queueURL)" } ?? "local")",
            "workers": "\(workers.scaling.map { "auto \($0.minWorkers)...\($0.maxWorkers)" } ?? String(workers.count))",
        ]
        if let gateway = paymentURL {
            metadata["payment"] = "http \(gateway.baseURL)"
            metadata["payment_timeout"] = "\(gateway.requestTimeout.shortDescription)"
        } else {
            metadata["payment"] = "simulator"
            metadata["payment_latency"] = "\(payment.latency)"
            if payment.declineRate > 0 { metadata["payment_decline_rate"] = "\(payment.declineRate)" }
            if payment.transientErrorRate > 0 { metadata["payment_error_rate"] = "\(payment.transientErrorRate)" }
            if let limit = payment.concurrencyLimit { metadata["payment_concurrency"] = "\(limit)" }
        }
        if queue.deadLetterHold > .zero { metadata["dead_letter_hold"] = "\(queue.deadLetterHold.shortDescription)" }
        return metadata
    }
}
