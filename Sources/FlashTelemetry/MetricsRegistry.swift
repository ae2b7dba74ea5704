import Metrics
import Prometheus

/// One process's metrics, exposed at `GET /metrics` in Prometheus text format.
///
/// Components record through swift-metrics into ``factory`` (counters, timers); values read at
/// scrape time (queue depth, stock, workers) are gauges set on ``prometheus`` just before it
/// emits. Each process (and each system a test builds) owns its own registry: nothing goes
/// through the global `MetricsSystem`, so two systems in one test process never mix figures.
public final class MetricsRegistry: Sendable {
    /// The Prometheus registry that emits the exposition.
    public let prometheus: PrometheusCollectorRegistry
    /// The swift-metrics factory that records into ``prometheus``.
    public let factory: PrometheusMetricsFactory

    /// Buckets of HTTP request durations: 0.5 ms to 30 s (accepting an order takes about a millisecond;
    /// a sync checkout waits for the gateway).
    public static let requestBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
        .seconds(5), .seconds(10), .seconds(30),
    ]
    /// Buckets of payment durations: 1 ms to 60 s (the seeds' gateway takes 3 s).
    public static let paymentBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .seconds(3), .seconds(5), .seconds(10),
        .seconds(30), .seconds(60),
    ]

    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = Self.requestBuckets
        factory.durationHistogramBuckets = [MetricNames.paymentDuration: Self.paymentBuckets, MetricNames.gatewayChargeDuration: Self.paymentBuckets]
        self.prometheus = registry
        self.factory = factory
    }

    /// A gauge set at scrape time (the same name and labels give the same gauge).
    public func gauge(_ name: String, _ labels: [(String, String)] = [], help: String) -> Prometheus.Gauge {
        // The whole name as `metricName` with an empty unit: the descriptor joins its non-empty parts.
        prometheus.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }

    /// The exposition: every metric in Prometheus text format 0.0.4.
    public func exposition() -> [UInt8] {
        prometheus.emitToBuffer()
    }

    /// The content type of ``exposition()``.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}

/// Metric names the registry configures: HTTP request metrics (recorded by
/// ``HTTPMetricsMiddleware``), and the payment durations whose buckets differ from the requests'
/// (recorded by `InstrumentedPaymentGateway` in FlashPayments, under these same names).
public enum MetricNames {
    public static let httpRequests = "flashsale_http_requests_total"
    public static let httpDuration = "flashsale_http_request_duration_seconds"
    public static let paymentDuration = "flashsale_payment_duration_seconds"
    public static let gatewayChargeDuration = "flashsale_gateway_charge_duration_seconds"
}
