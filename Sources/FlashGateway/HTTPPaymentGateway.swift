import AsyncHTTPClient
import FlashCore
import FlashPayments
import HTTPTypes
import Foundation
import Logging
import NIOCore
import OpenAPIAsyncHTTPClient
import OpenAPIRuntime
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
        /// The gateway's secret, sent as `Authorization: Bearer …` (``GatewayServer`` refuses
        /// charges, look-ups and voids without it).
        public var token: String

        public init(baseURL: String, token: String, requestTimeout: Duration = .seconds(30), attempts: Int = 4, backoff: Duration = .milliseconds(100),
                    maxConnections: Int = 64, expectedLatency: Duration = .seconds(3)) {
            self.token = token
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
    private let api: Client
    private let probeAPI: Client
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
        http.timeout = .init(connect: .seconds(2), read: .milliseconds(configuration.requestTimeout.asMilliseconds + 1_000))
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
        var probe = HTTPClient.Configuration()
        probe.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 2)
        probe.connectionPool.retryConnectionEstablishment = false
        probe.timeout = .init(connect: .seconds(2), read: .seconds(5))
        self.probeClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: probe)
        // The generated client (FlashGateway/openapi.yaml) writes each request, percent-encoding
        // the order id in a path, and reads each answer.
        // The command line refuses a URL that does not parse; a caller passing one is a bug.
        guard let serverURL = URL(string: configuration.baseURL) else { preconditionFailure("not a URL: \(configuration.baseURL)") }
        // Answers are read up to 1 MiB (the runtime would read any length).
        let bounded: [any ClientMiddleware] = [BearerToken(token: configuration.token), BoundedResponseBody(limit: 1 << 20)]
        api = Client(serverURL: serverURL, transport: AsyncHTTPClientTransport(configuration: .init(
            client: client, timeout: .milliseconds(configuration.requestTimeout.asMilliseconds))), middlewares: bounded)
        let probeTimeout = min(Duration.seconds(5), max(.seconds(1), configuration.requestTimeout))
        probeAPI = Client(serverURL: serverURL, transport: AsyncHTTPClientTransport(configuration: .init(
            client: probeClient, timeout: .milliseconds(probeTimeout.asMilliseconds))), middlewares: bounded)
    }

    public var expectedLatency: Duration { configuration.expectedLatency }

    public func charge(orderID: String, amount: Double) async throws -> PaymentOutcome {
        if Task.isCancelled { throw PaymentNotSent() }
        do {
            return try await call("charge") {
                switch try await self.api.charge(headers: .init(idempotencyKey: orderID), body: .json(.init(orderId: orderID, amount: amount))) {
                case let .ok(charge): .done(try charge.body.json.outcome)
                case let .serviceUnavailable(error): .retry(503, error)
                case let .badRequest(error): .refused(400, error)
                case let .unprocessableContent(error): .refused(422, error)
                case let .default(status, error): Self.answer(status, error)
                }
            }
        } catch let error as TransientPaymentError {
            transientErrors.add(1, ordering: .relaxed)
            throw error
        }
    }

    public func finalOutcome(orderID: String) async throws -> PaymentOutcome {
        try await call("void") {
            switch try await self.api.voidCharge(path: .init(orderId: orderID)) {
            case let .ok(charge): .done(try charge.body.json.outcome)
            case let .default(status, error): Self.answer(status, error)
            }
        }
    }

    public func statistics() async throws -> PaymentStatistics {
        let stats = try await call("stats") {
            switch try await self.api.getStats() {
            case let .ok(stats): .done(try stats.body.json)
            case let .default(status, error): Self.answer(status, error)
            }
        }
        return PaymentStatistics(charges: stats.charges, declines: stats.declines, duplicateChargesPrevented: stats.duplicatesPrevented,
                                 transientErrors: transientErrors.load(ordering: .relaxed), voided: stats.voided)
    }

    /// One `GET /health` within 5 s at most (or the request timeout, if shorter), then one
    /// look-up that needs the secret (a gateway that refuses this process's secret is as good as
    /// away: the pool waits, and no delivery is spent on it); no retries, the caller probes again.
    public func probe() async throws {
        do {
            switch try await probeAPI.getHealth() {
            case .ok: break
            case let .undocumented(status, _) where (200..<300).contains(status): break
            case let .undocumented(status, _): throw TransientPaymentError("the gateway's health check answered \(status)")
            }
        } catch let error as ClientError where (200..<300).contains(error.response?.status.code ?? 0) {
            // A provider whose health check answers 2xx with another body (or none) is up.
        }
        do {
            if case let .default(status, _) = try await probeAPI.getCharge(path: .init(orderId: "flashsale-probe")), status == 401 || status == 403 {
                throw TransientPaymentError("the gateway refuses this process's secret (\(status)): check FLASHSALE_GATEWAY_TOKEN or --payment-token-file",
                                            reachedGateway: false)
            }
        } catch let error as TransientPaymentError {
            throw error
        } catch {
            // A provider without look-ups (or another answer): its health check said enough.
        }
    }

    /// What one attempt of a call came to.
    private enum Answer<Value: Sendable>: Sendable {
        case done(Value)
        /// 429 or 5xx: tried again.
        case retry(String)
        /// A refusal the gateway will repeat: not worth retrying, nothing was charged.
        case refused(status: Int, String)

        static func retry(_ status: Int, _ error: Components.Responses._Error) -> Self { .retry(Self.text(status, error)) }
        static func refused(_ status: Int, _ error: Components.Responses._Error) -> Self { .refused(status: status, Self.text(status, error)) }
        private static func text(_ status: Int, _ error: Components.Responses._Error) -> String {
            "\(status) \((try? error.body.json.error.message) ?? "")"
        }
    }

    private static func answer<Value>(_ status: Int, _ error: Components.Responses._Error) -> Answer<Value> {
        status == 429 || (500...599).contains(status) ? .retry(status, error) : .refused(status, error)
    }

    /// A call with retries: its value, or ``TransientPaymentError`` (with `reachedGateway` false
    /// when no attempt could connect).
    private func call<Value: Sendable>(_ operation: String, _ attempt: @Sendable () async throws -> Answer<Value>) async throws -> Value {
        var lastError = "no attempt"
        var reached = false
        for number in 0..<max(1, configuration.attempts) {
            if number > 0 {
                let base = Double(configuration.backoff.asMilliseconds) * Double(1 << (number - 1))
                // Jitter: spread the retries of many workers over the window.
                try await Task.sleep(for: .milliseconds(Int64(base * Double.random(in: 0.5..<1.0))))
            }
            do {
                switch try await attempt() {
                case let .done(value):
                    return value
                case let .retry(why):
                    reached = true
                    lastError = "the gateway answered \(why)"
                case let .refused(status, why) where status == 401 || status == 403:
                    // Refused before anything was charged: not the order's fault, no delivery spent.
                    logger.error("the payment gateway refuses this process's secret: check FLASHSALE_GATEWAY_TOKEN or --payment-token-file",
                                 metadata: ["answer": "\(why)"])
                    throw TransientPaymentError("the gateway refused this process's secret (\(why))", reachedGateway: false)
                case let .refused(_, why):
                    throw TransientPaymentError("the gateway refused the request (\(why))")
                }
            } catch let error as TransientPaymentError {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                if Task.isCancelled { throw CancellationError() }
                let cause = (error as? ClientError)?.underlyingError ?? error
                if cause is CancellationError { throw CancellationError() }
                // An answer that is not the document's (a proxy's HTML page, a status the gateway
                // does not send): a refusal when it says so, not worth retrying when it is 2xx.
                if let status = (error as? ClientError)?.response?.status.code {
                    if (400..<500).contains(status), status != 429 {
                        throw TransientPaymentError("the gateway refused the request (\(status), an answer not in its API)")
                    }
                    if (200..<300).contains(status) {
                        throw TransientPaymentError("the gateway answered \(status) with something that is not the API's answer: \(cause)")
                    }
                }
                if (error as? ClientError)?.response != nil || !Self.neverSent(cause) { reached = true }
                lastError = "\(cause)"
            }
            logger.debug("gateway call failed; retrying", metadata: ["operation": "\(operation)", "attempt": "\(number + 1)", "error": "\(lastError)"])
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

/// Sends the gateway's secret with every request.
struct BearerToken: ClientMiddleware {
    let token: String

    func intercept(_ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)) async throws -> (HTTPResponse, HTTPBody?) {
        var request = request
        request.headerFields[.authorization] = "Bearer \(token)"
        return try await next(request, body, baseURL)
    }
}

/// Reads each answer's body whole, up to a bound, before the generated client decodes it: a
/// misbehaving gateway or proxy cannot grow a worker's memory without limit.
struct BoundedResponseBody: ClientMiddleware {
    let limit: Int

    func intercept(_ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)) async throws -> (HTTPResponse, HTTPBody?) {
        let (response, body) = try await next(request, body, baseURL)
        guard let body else { return (response, nil) }
        return (response, HTTPBody(try await [UInt8](collecting: body, upTo: limit)))
    }
}
