import Metrics

/// A payment gateway that times and counts this process's charges:
/// `flashsale_payment_duration_seconds{outcome}` and `flashsale_payments_total{outcome}`, with
/// `outcome` one of `approved`, `declined`, `voided`, `transient_error`, `not_sent`, `cancelled`
/// or `error` (a bounded set). Everything else passes through.
public struct InstrumentedPaymentGateway: PaymentGateway {
    /// The gateway that charges.
    public let base: any PaymentGateway
    private let handlers: [String: (Counter, Timer)]

    /// The metric names of a payment client (workers, the sync endpoint).
    public static let clientNames = (count: "flashsale_payments_total", duration: "flashsale_payment_duration_seconds")
    /// The metric names of the gateway service (`flashsale gateway`).
    public static let gatewayNames = (count: "flashsale_gateway_charges_total", duration: "flashsale_gateway_charge_duration_seconds")

    public init(_ base: any PaymentGateway, factory: any MetricsFactory, names: (count: String, duration: String) = clientNames) {
        self.base = base
        let outcomes = ["approved", "declined", "voided", "transient_error", "not_sent", "cancelled", "error"]
        handlers = Dictionary(uniqueKeysWithValues: outcomes.map { outcome in
            (outcome, (Counter(label: names.count, dimensions: [("outcome", outcome)], factory: factory),
                       Timer(label: names.duration, dimensions: [("outcome", outcome)], factory: factory)))
        })
    }

    public func charge(orderID: String, amount: Double) async throws -> PaymentOutcome {
        let start = ContinuousClock.now
        do {
            let outcome = try await base.charge(orderID: orderID, amount: amount)
            switch outcome {
            case .approved: record("approved", since: start)
            case .declined: record("declined", since: start)
            case .voided: record("voided", since: start)
            }
            return outcome
        } catch {
            let outcome = switch error {
            case is TransientPaymentError: "transient_error"
            case is PaymentNotSent: "not_sent"
            case is CancellationError: "cancelled"
            default: "error"
            }
            record(outcome, since: start)
            throw error
        }
    }

    private func record(_ outcome: String, since start: ContinuousClock.Instant) {
        let (counter, timer) = handlers[outcome]!
        counter.increment()
        timer.record(duration: ContinuousClock.now - start)
    }

    public func finalOutcome(orderID: String) async throws -> PaymentOutcome {
        try await base.finalOutcome(orderID: orderID)
    }

    public func statistics() async throws -> PaymentStatistics {
        try await base.statistics()
    }

    public func probe() async throws {
        try await base.probe()
    }

    public var expectedLatency: Duration { base.expectedLatency }
}
