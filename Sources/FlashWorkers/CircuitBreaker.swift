import FlashQueue
import Logging
import Synchronization

/// A circuit breaker over one dependency of the worker pool (the order store, the payment
/// gateway): while it is open, the pool takes no new work that needs the dependency, so an outage
/// of any length spends no deliveries, and a probe that costs no order finds out when the
/// dependency is back.
///
/// - **Closed**: work goes on. When a call fails, ``isAway(after:)`` asks the probe at once: if
///   the probe fails too, the dependency is away and the breaker opens; if it answers, the
///   failure was the call's own (a declined card, a statement timeout), and counts as usual.
/// - **Open**: ``waitUntilClosed()`` holds the fetchers; ``probeWhileOpen()`` calls the probe
///   after `firstProbe`, then at doubling intervals up to `longestProbe`, and closes the breaker
///   when the probe answers.
///
/// The probe is a call that costs no order (the gateway's health check, a read by key). There
/// is no half-open state that lets one order through as the probe: an order used as a probe
/// would spend one delivery per failed probe, and a lone order in a long outage would be
/// dead-lettered by probing alone. Nor does the breaker open on a count of failures: a gateway
/// that fails one charge in ten is not away, and a lone order failing against a gateway that is
/// away must not spend its deliveries before a count is reached.
///
/// Hand-written on purpose: no package in the mirror offers a breaker for async Swift, and the
/// part that matters (what counts as "away", what the probe is) is the pool's own.
final class CircuitBreaker: Sendable {
    /// The dependency's name, for logs and metrics ("database", "gateway").
    let name: String
    let firstProbe: Duration
    let longestProbe: Duration
    private let probe: @Sendable () async throws -> Void
    private let logger: Logger

    private struct State {
        var open = false
        var trips = 0
        /// A probe run by ``isAway(after:)`` is under way; these wait for its answer.
        var checking = false
        var checkWaiters: [CheckedContinuation<Bool, Never>] = []
    }

    private let state = Mutex(State())
    /// Moved on every change of state (key 0): wakes the fetchers and the probe.
    private let changed = ArrivalSignal<Int>()

    /// - Parameter probe: returns when the dependency answers, throws when it cannot be reached;
    ///   bounded in time by the caller's own timeouts.
    init(name: String, firstProbe: Duration, longestProbe: Duration, logger: Logger, probe: @escaping @Sendable () async throws -> Void) {
        self.name = name
        self.probe = probe
        self.firstProbe = firstProbe
        self.longestProbe = max(firstProbe, longestProbe)
        self.logger = logger
    }

    /// Whether the dependency is taken as away.
    var isOpen: Bool { state.withLock { $0.open } }

    /// How many times the breaker opened.
    var trips: Int { state.withLock { $0.trips } }

    /// Opens the breaker (the dependency failed in a way that says it is away). Returns whether
    /// this call opened it: false when it was open already.
    @discardableResult
    func trip(_ reason: String) -> Bool {
        let opened = state.withLock { state -> Bool in
            guard !state.open else { return false }
            state.open = true
            state.trips += 1
            return true
        }
        if opened {
            logger.warning("dependency unavailable: workers take no new orders until it answers",
                           metadata: ["dependency": "\(name)", "reason": "\(reason)"])
            changed.notify(0)
        }
        return opened
    }

    /// Closes the breaker: work goes on.
    func close() {
        let closed = state.withLock { state -> Bool in
            guard state.open else { return false }
            state.open = false
            return true
        }
        if closed {
            logger.info("dependency answers again: workers resume", metadata: ["dependency": "\(name)"])
            changed.notify(0)
        }
    }

    /// After a call to the dependency failed with `error`: whether the dependency is away. True
    /// at once when the breaker is open; otherwise the probe decides (one probe at a time:
    /// concurrent callers share its answer), and opens the breaker when it fails.
    func isAway(after error: any Error) async -> Bool {
        enum Role { case answered(Bool), prober, waiter }
        let role = state.withLock { state -> Role in
            if state.open { return .answered(true) }
            if state.checking { return .waiter }
            state.checking = true
            return .prober
        }
        switch role {
        case let .answered(away):
            return away
        case .waiter:
            return await withCheckedContinuation { continuation in
                let answer = state.withLock { state -> Bool? in
                    if state.checking {
                        state.checkWaiters.append(continuation)
                        return nil
                    }
                    return state.open
                }
                if let answer { continuation.resume(returning: answer) }
            }
        case .prober:
            var away = false
            do {
                try await probe()
            } catch {
                // A probe cut short by cancellation (shutdown) says nothing about the dependency.
                if !Task.isCancelled {
                    away = true
                    trip("\(error)")
                }
            }
            let waiters = state.withLock { state in
                state.checking = false
                defer { state.checkWaiters.removeAll() }
                return state.checkWaiters
            }
            for waiter in waiters { waiter.resume(returning: away) }
            return away
        }
    }

    /// Returns once the breaker is closed (at once if it is), or when the task is cancelled.
    func waitUntilClosed() async {
        await wait(untilOpen: false)
    }

    /// Until the task is cancelled: whenever the breaker is open, calls the probe at doubling
    /// intervals from `firstProbe` to `longestProbe`, and closes it when the probe answers.
    func probeWhileOpen() async {
        while !Task.isCancelled {
            await wait(untilOpen: true)
            var delay = firstProbe
            while isOpen, !Task.isCancelled {
                do { try await Task.sleep(for: delay) } catch { return }
                do {
                    try await probe()
                    close()
                } catch {
                    logger.debug("probe failed", metadata: ["dependency": "\(name)", "error": "\(error)"])
                    delay = min(delay * 2, longestProbe)
                }
            }
        }
    }

    private func wait(untilOpen wanted: Bool) async {
        while !Task.isCancelled {
            let generation = changed.generation(0)
            if isOpen == wanted { return }
            await changed.wait(0, after: generation)
        }
    }
}
