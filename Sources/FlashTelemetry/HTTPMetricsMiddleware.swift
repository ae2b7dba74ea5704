import Metrics
import Hummingbird
import Logging
import Synchronization

/// Counts every request by route template, method and status
/// (`flashsale_http_requests_total`) and times it (`flashsale_http_request_duration_seconds`,
/// from the request's arrival to its response's head); logs each at debug level.
///
/// Written rather than Hummingbird's `MetricsMiddleware`, which records only into the global
/// `MetricsSystem` and under OpenTelemetry names (`hb.requests`, dots), while every flashsale
/// process keeps its own registry and Prometheus names. The route label is the template
/// (`/orders/{id}`), or `unmatched` for a path no route knows: never a raw path, so the label
/// set stays bounded whatever clients ask.
public struct HTTPMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    /// What one request was, for an observer (the dashboard's accept latency).
    public struct Observation: Sendable {
        public var method: HTTPRequest.Method
        public var route: String
        public var status: Int
        public var duration: Duration
    }

    private let handlers: HTTPMetricHandlers
    private let observe: (@Sendable (Observation) -> Void)?

    /// - Parameters:
    ///   - factory: where the counters and timers go.
    ///   - observe: called once per answered request.
    public init(factory: any MetricsFactory, observe: (@Sendable (Observation) -> Void)? = nil) {
        self.handlers = HTTPMetricHandlers(factory: factory)
        self.observe = observe
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            record(request, context: context, status: response.status.code, since: start)
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            record(request, context: context, status: status, since: start)
            throw error
        }
    }

    private func record(_ request: Request, context: Context, status: Int, since start: ContinuousClock.Instant) {
        let duration = ContinuousClock.now - start
        // Hummingbird names a path no route knows "NotFound"; one name for it, never the raw path.
        let route = context.endpointPath.flatMap { $0.hasPrefix("/") ? $0 : nil } ?? "unmatched"
        let (counter, timer) = handlers.handlers(method: request.method, route: route, status: status)
        counter.increment()
        timer.record(duration: duration)
        observe?(Observation(method: request.method, route: route, status: status, duration: duration))
        context.logger.debug("request", metadata: [
            "method": "\(request.method)", "route": "\(route)", "status": "\(status)",
            "duration_ms": "\(duration / .milliseconds(1))",
        ])
    }
}

/// The counter and timer of each (method, route, status), made once: the registry's own look-up
/// takes a lock and builds a key from the labels on every call.
final class HTTPMetricHandlers: Sendable {
    struct Key: Hashable {
        var method: HTTPRequest.Method
        var route: String
        var status: Int
    }

    private let factory: any MetricsFactory
    private let cache = Mutex<[Key: (CoreMetrics.Counter, CoreMetrics.Timer)]>([:])

    init(factory: any MetricsFactory) {
        self.factory = factory
    }

    func handlers(method: HTTPRequest.Method, route: String, status: Int) -> (CoreMetrics.Counter, CoreMetrics.Timer) {
        let key = Key(method: method, route: route, status: status)
        if let found = cache.withLock({ $0[key] }) { return found }
        let labels = [("method", method.rawValue), ("route", route), ("status", String(status))]
        let made = (CoreMetrics.Counter(label: MetricNames.httpRequests, dimensions: labels, factory: factory),
                    CoreMetrics.Timer(label: MetricNames.httpDuration, dimensions: labels, factory: factory))
        return cache.withLock { cache in
            if let found = cache[key] { return found }
            cache[key] = made
            return made
        }
    }
}
