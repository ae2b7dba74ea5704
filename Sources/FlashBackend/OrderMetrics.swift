import Metrics
import FlashOrders

/// This process's order counters, recorded through swift-metrics:
/// `flashsale_orders_accepted_total{endpoint}` (orders this process created) and
/// `flashsale_orders_finished_total{status,by}` (orders this process brought to a final state).
/// Every label value is fixed here, so the label set is bounded. Fleet-wide counts are the
/// backend's, read at scrape time.
public struct OrderMetrics: Sendable {
    /// Which endpoint created an order.
    public enum Endpoint: String, Sendable, CaseIterable {
        case async, sync, buy
    }

    /// Who brought an order to its final state.
    public enum Finisher: String, Sendable, CaseIterable {
        /// A worker, after its charge.
        case worker
        /// The sync endpoint, after its charge.
        case sync
        /// The reconciler, settling an order nobody else would.
        case reconciler
    }

    private let accepted: [Endpoint: Counter]
    private let finished: [Finisher: [Bool: Counter]]

    /// Counters made with `factory` (none are recorded when it is a no-op factory).
    public init(factory: any MetricsFactory) {
        accepted = Dictionary(uniqueKeysWithValues: Endpoint.allCases.map {
            ($0, Counter(label: "flashsale_orders_accepted_total", dimensions: [("endpoint", $0.rawValue)], factory: factory))
        })
        finished = Dictionary(uniqueKeysWithValues: Finisher.allCases.map { by in
            (by, [true: Counter(label: "flashsale_orders_finished_total", dimensions: [("by", by.rawValue), ("status", "completed")], factory: factory),
                  false: Counter(label: "flashsale_orders_finished_total", dimensions: [("by", by.rawValue), ("status", "failed")], factory: factory)])
        })
    }

    /// Records nowhere.
    public static var none: OrderMetrics { OrderMetrics(factory: NOOPMetricsHandler.instance) }

    public func recordAccepted(_ endpoint: Endpoint) {
        accepted[endpoint]!.increment()
    }

    public func recordFinished(_ status: OrderStatus, by finisher: Finisher) {
        guard status.isTerminal else { return }
        finished[finisher]![status == .completed]!.increment()
    }

    public func recordFinished(_ result: OrderResult, by finisher: Finisher) {
        finished[finisher]![result == .completed]!.increment()
    }
}
