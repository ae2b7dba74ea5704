import FlashCore
import FlashOrders
import FlashPayments

/// The rule of final states, in one place: an order ends `completed` exactly when a charge for
/// it succeeded, and `failed` exactly when none did.
///
/// Whoever gives up on an order (the dead-letter handler, the reconciler, a purge, a sync
/// request past its deadline) settles it here instead of failing it outright: the gateway is
/// asked for the outcome of the order's charge by its idempotency key (the order id), and if
/// no charge was made the gateway voids it in the same step, so none can be made later.
/// Charged → `completed` and the units sold; declined or voided → `failed` and the units
/// released; the gateway cannot answer → the order is left open and the call throws, to be
/// tried again later.
public struct OrderSettler: Sendable {
    /// How a settlement ended.
    public enum Settlement: Sendable, Hashable {
        /// The order was open and is now completed or failed, as stored.
        case settled(Order)
        /// The order was already completed or failed; nothing changed.
        case alreadyFinal(Order)
        /// No such order.
        case notFound
    }

    let store: any OrderStore
    let gateway: any PaymentGateway
    /// How long the gateway is given to answer; past it the outcome counts as unknown.
    public let gatewayTimeout: Duration

    public init(store: any OrderStore, gateway: any PaymentGateway, gatewayTimeout: Duration = .seconds(10)) {
        self.store = store
        self.gateway = gateway
        self.gatewayTimeout = gatewayTimeout
    }

    /// Settles an open order that nobody is charging any more. `why` says what happened to it
    /// (it becomes part of the failure reason when nothing was charged). Throws when the
    /// gateway cannot tell the outcome; the order is then unchanged.
    ///
    /// - Parameters:
    ///   - counted: count the settlement as the reconciler's (``OrderStore/settle(_:result:counted:)``).
    ///   - actor: who settles, for the order's history (``OrderEvent/Kind/settled``).
    public func settle(_ orderID: String, why: String, counted: Bool = true, by actor: String) async throws -> Settlement {
        guard let order = try await store.order(id: orderID) else { return .notFound }
        if order.status.isTerminal { return .alreadyFinal(order) }
        let outcome = try await withTimeout(gatewayTimeout) { [gateway] in try await gateway.finalOutcome(orderID: orderID) }
        let result = OrderResult(outcome, voided: "\(why): no charge was made, and none will be")
        // Who settled it and why, in its history, in the settlement's own transaction.
        let detail = switch result {
        case .completed: "completed: the gateway had charged it (\(why))"
        case let .failed(reason): "failed: \(reason)"
        }
        let event = OrderEvent(orderID: orderID, at: WallClock.nowMillis(), kind: .settled, detail: detail, actor: actor)
        guard let stored = try await store.settle(orderID, result: result, counted: counted, event: event) else { return .notFound }
        // Another settler (or the worker) may have finished it meanwhile: report what stands.
        return stored.changed ? .settled(stored.order) : .alreadyFinal(stored.order)
    }
}

extension OrderResult {
    /// The order's result for a charge's outcome; `voided` is the failure reason when the
    /// charge was voided before it was made.
    public init(_ outcome: PaymentOutcome, voided: String) {
        switch outcome {
        case .approved: self = .completed
        case let .declined(reason): self = .failed(reason: "payment declined: \(reason)")
        case .voided: self = .failed(reason: voided)
        }
    }
}
