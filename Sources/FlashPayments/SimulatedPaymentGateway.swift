import FlashCore
import Synchronization

/// A payment gateway simulator: latency, an optional concurrency limit, a decline rate and a
/// transient-error rate, idempotent by order id through its ``PaymentLedger``.
public final class SimulatedPaymentGateway: PaymentGateway {
    /// The simulator's settings.
    public struct Configuration: Sendable, Hashable {
        /// How long each charge takes.
        public var latency: LatencyModel
        /// Charges in progress at once; `nil` is no limit (the default).
        public var concurrencyLimit: Int?
        /// Fraction (0…1) of charges declined.
        public var declineRate: Double
        /// Fraction (0…1) of attempts that fail transiently, charging nothing.
        public var transientErrorRate: Double

        public init(latency: LatencyModel = .fixed(.seconds(3)), concurrencyLimit: Int? = nil,
                    declineRate: Double = 0, transientErrorRate: Double = 0) {
            self.latency = latency
            self.concurrencyLimit = concurrencyLimit
            self.declineRate = declineRate
            self.transientErrorRate = transientErrorRate
        }
    }

    public let configuration: Configuration
    private let ledger: any PaymentLedger
    private let limit: AsyncSemaphore?
    /// What only this process saw: transient errors.
    private let counters = Mutex(PaymentStatistics())

    public init(configuration: Configuration, ledger: any PaymentLedger = InMemoryPaymentLedger()) {
        self.configuration = configuration
        self.ledger = ledger
        self.limit = configuration.concurrencyLimit.map { AsyncSemaphore(permits: max(1, $0)) }
    }

    public var expectedLatency: Duration { configuration.latency.mean }

    public func charge(orderID: String, amount: Double) async throws -> PaymentOutcome {
        // Cancelled while waiting for a slot (or before): the charge never reached the gateway.
        if let limit {
            guard await limit.acquire() else { throw PaymentNotSent() }
        } else if Task.isCancelled {
            throw PaymentNotSent()
        }
        defer { limit?.release() }
        var generator = SystemRandomNumberGenerator()
        let latency = configuration.latency.sample(using: &generator)
        if Double.random(in: 0..<1, using: &generator) < configuration.transientErrorRate {
            // A retry of an order already decided gets its first outcome, not a new failure.
            if let decided = try await ledger.outcome(for: orderID) {
                // Through the ledger, so the duplicate is counted where every process sees it.
                return try await ledger.record(orderID: orderID, amount: amount, outcome: decided).outcome
            }
            try await Task.sleep(for: latency)
            counters.withLock { $0.transientErrors += 1 }
            throw TransientPaymentError("gateway timeout (simulated transient error)")
        }
        let outcome: PaymentOutcome = Double.random(in: 0..<1, using: &generator) < configuration.declineRate
            ? .declined(reason: "card declined")
            : .approved(chargeID: "ch_" + TimeOrderedID.make().replacingOccurrences(of: "-", with: ""))
        // As at a real gateway, the charge is decided when the request arrives and answered after
        // the latency: the ledger is written during the wait, not after it. If the ledger already
        // holds an outcome for the order (a retry after a crash), that outcome is answered at once
        // and nothing new is charged. A caller that gives up meanwhile (shutdown) may leave a
        // decided charge behind; the ledger makes its retry return it instead of charging again.
        let (decision, waited) = await withTaskGroup(of: ChargeStep.self) { group -> (Result<(PaymentOutcome, Bool), Error>?, Bool) in
            group.addTask {
                do {
                    return .decided(.success(try await self.ledger.record(orderID: orderID, amount: amount, outcome: outcome)))
                } catch {
                    return .decided(.failure(error))
                }
            }
            group.addTask {
                do {
                    try await Task.sleep(for: latency)
                    return .waited(true)
                } catch {
                    return .waited(false)
                }
            }
            var decision: Result<(PaymentOutcome, Bool), Error>?
            var waited = false
            for await step in group {
                switch step {
                case let .decided(result):
                    decision = result
                    if case let .success((_, recorded)) = result, !recorded { group.cancelAll() }
                case let .waited(done):
                    waited = done
                }
            }
            return (decision, waited)
        }
        guard let decision else { throw CancellationError() }
        let (standing, recorded) = try decision.get()
        if recorded, !waited { throw CancellationError() }
        return standing
    }

    /// Looks the order up in the ledger and voids it there if no charge was decided: the same
    /// insert-if-absent that decides a charge, so whichever of the two comes first stands.
    public func finalOutcome(orderID: String) async throws -> PaymentOutcome {
        try await ledger.record(orderID: orderID, amount: 0, outcome: .voided).outcome
    }

    public func statistics() async throws -> PaymentStatistics {
        let counts = try await ledger.counts()
        return counters.withLock { counters in
            // The ledger is the truth for what was decided and what it refused to charge twice
            // (it outlives restarts and is shared by the fleet); the counters hold what only this
            // process saw.
            PaymentStatistics(charges: counts.approved, declines: counts.declined,
                              duplicateChargesPrevented: counts.duplicates,
                              transientErrors: counters.transientErrors, voided: counts.voided)
        }
    }
}

import Foundation

/// One of the two halves of a charge: the ledger's decision, or the latency passing.
private enum ChargeStep: Sendable {
    case decided(Result<(PaymentOutcome, Bool), Error>)
    case waited(Bool)
}
