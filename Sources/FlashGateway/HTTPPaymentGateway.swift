import AsyncHTTPClient
import FlashCore
import FlashPayments
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// The payment gateway over HTTP (`--payment-url`): charges go to a `flashsale gateway` (or a
/// provider with the same API) with the order id as the idempotency key, so any number of
/// worker processes may charge an order and it is charged once.
///
/// Every call has a timeout; connection failures, timeouts, 429 and 5xx are retried with
/// exponential backoff and jitter (safe: the key makes a repeat a look-up); the connection pool
/// is bounded. A Service: it owns its HTTP client and shuts it down at graceful shutdown (put it
/// after the backend and before the workers in a service group).
public final class HTTPPaymentGateway: PaymentGateway, Service {
    public struct Configuration: Sendable {
        /// The gateway's base URL, e.g. `http://127.0.0.1:9090`.
        public var baseURL: String
        /// How long one charge may take, the provider's latency included.
        public var requestTimeout: Duration
        /// Attempts per call (the first included).
        public var attempts: Int
        /// First backoff; doubled per retry, with jitter.
        public var backoff: Duration
        /// Connections kept to the gateway, at most.
        public var maxConnections: Int
        /// What a charge is expected to take (for wait predictions).
        public var expectedLatency: Duration

        public init(baseURL: String, requestTimeout: Duration = .seconds(30), attempts: Int = 4, backoff: Duration = .milliseconds(100),
                    maxConnections: Int = 64, expectedLatency: Duration = .seconds(3)) {
            self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
            self.requestTimeout = requestTimeout
            self.attempts = attempts
            self.backoff = backoff
            self.maxConnections = maxConnections
            self.expectedLatency = expectedLatency
        }
    }

    public let configuration: Configuration
    private let client: HTTPClient
    /// The health check's own client: a probe must not wait behind the charges for a connection
    /// of the pool (a busy pool is not a gateway that is away).
    private let probeClient: HTTPClient
    private let logger: Logger
    private let transientErrors = Atomic<Int>(0)
    private let closed = Mutex(false)

    public init(configuration: Configuration, logger: Logger = Logger(label: "flashsale.gateway-client")) {
        self.configuration = configuration
        self.logger = logger
        var http = HTTPClient.Configuration()
        http.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.maxConnections)
        // A refused connection fails the request at once (our own attempts retry it): by default
        // the pool retries connecting until the request's deadline, so a charge against a gateway
        // that is down took every attempt's whole timeout before the workers could know.
        http.connectionPool.retryConnectionEstablishment = false
        http.timeout = .init(connect: .seconds(2), read: .seconds(Int64(configuration.requestTimeout.components.seconds) + 1))
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
        var probe = HTTPClient.Configuration()
        probe.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 2)
        probe.connectionPool.retryConnectionEstablishment = false
        probe.timeout = .init(connect: .seconds(2), read: .seconds(5))
        self.probeClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: probe)
    }

    public var expectedLatency: Duration { configuration.expectedLatency }

    public func charge(orderID: String, amount: Double) async throws -> PaymentOutcome {
        if Task.isCancelled { throw PaymentNotSent() }
        let body = try JSONEncoder().encode(ChargeRequest(orderID: orderID, amount: amount))
        do {
            return try await call(.POST, "/charges", body: body, idempotencyKey: orderID)
        } catch let error as TransientPaymentError {
            transientErrors.add(1, ordering: .relaxed)
            throw error
        }
    }

    public func finalOutcome(orderID: String) async throws -> PaymentOutcome {
        try await call(.POST, "/charges/\(Self.escaped(orderID))/void", body: nil, idempotencyKey: nil)
    }

    public func statistics() async throws -> PaymentStatistics {
        let data = try await send(.GET, "/stats", body: nil, idempotencyKey: nil)
        let stats = try JSONDecoder().decode(GatewayStats.self, from: data)
        return PaymentStatistics(charges: stats.charges, declines: stats.declines, duplicateChargesPrevented: stats.duplicatesPrevented,
                                 transientErrors: transientErrors.load(ordering: .relaxed), voided: stats.voided)
    }

    /// One `GET /health` within 5 s at most (or the request timeout, if shorter): no retries, the
    /// caller probes again.
    public func probe() async throws {
        let seconds = max(1, min(5, configuration.requestTimeout.components.seconds))
        let response = try await probeClient.execute(HTTPClientRequest(url: configuration.baseURL + "/health"), timeout: .seconds(seconds))
        _ = try await response.body.collect(upTo: 1 << 16)
        guard (200..<300).contains(response.status.code) else {
            throw TransientPaymentError("the gateway's health check answered \(response.status.code)")
        }
    }

    /// A charge-shaped call with retries; a definite outcome, or ``TransientPaymentError``.
    private func call(_ method: HTTPMethod, _ path: String, body: Data?, idempotencyKey: String?) async throws -> PaymentOutcome {
        let data = try await send(method, path, body: body, idempotencyKey: idempotencyKey)
        guard let outcome = try? JSONDecoder().decode(ChargeResponse.self, from: data).outcome else {
            throw TransientPaymentError("the gateway answered something that is not a charge")
        }
        return outcome
    }

    private func send(_ method: HTTPMethod, _ path: String, body: Data?, idempotencyKey: String?) async throws -> Data {
        var lastError = "no attempt"
        var reached = false
        for attempt in 0..<max(1, configuration.attempts) {
            if attempt > 0 {
                let base = Double(configuration.backoff.asMilliseconds) * Double(1 << (attempt - 1))
                // Jitter: spread the retries of many workers over the window.
                try await Task.sleep(for: .milliseconds(Int64(base * Double.random(in: 0.5..<1.0))))
            }
            var request = HTTPClientRequest(url: configuration.baseURL + path)
            request.method = method
            request.headers.add(name: "Content-Type", value: "application/json")
            if let idempotencyKey { request.headers.add(name: "Idempotency-Key", value: idempotencyKey) }
            if let body { request.body = .bytes(ByteBuffer(data: body)) }
            do {
                let response = try await client.execute(request, timeout: .seconds(Int64(configuration.requestTimeout.components.seconds)))
                reached = true
                let bytes = try await response.body.collect(upTo: 1 << 20)
                switch response.status.code {
                case 200..<300:
                    return Data(buffer: bytes)
                case 429, 500...599:
                    lastError = "the gateway answered \(response.status.code)"
                default:
                    // A refusal the gateway will repeat: not worth retrying, nothing was charged.
                    throw TransientPaymentError("the gateway refused the request (\(response.status.code)): \(String(buffer: bytes))")
                }
            } catch let error as TransientPaymentError {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                if Task.isCancelled { throw CancellationError() }
                if !Self.neverSent(error) { reached = true }
                lastError = "\(error)"
            }
            logger.debug("gateway call failed; retrying", metadata: ["path": "\(path)", "attempt": "\(attempt + 1)", "error": "\(lastError)"])
        }
        throw TransientPaymentError("payment gateway unreachable: \(lastError)", reachedGateway: reached)
    }

    /// Whether `error` says the request never left this process: no connection could be made.
    private static func neverSent(_ error: any Error) -> Bool {
        if let error = error as? HTTPClientError, error == .connectTimeout { return true }
        if let error = error as? IOError, [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH].contains(error.errnoCode) { return true }
        if let error = error as? ChannelError, case .connectTimeout = error { return true }
        return false
    }

    private static func escaped(_ id: String) -> String {
        id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? id
    }

    /// Waits for graceful shutdown, then closes the HTTP client.
    public func run() async throws {
        try? await gracefulShutdown()
        try await shutdown()
    }

    /// Closes the HTTP client; idempotent.
    public func shutdown() async throws {
        guard !closed.withLock({ closed in defer { closed = true }; return closed }) else { return }
        try await client.shutdown()
        try await probeClient.shutdown()
    }
}
