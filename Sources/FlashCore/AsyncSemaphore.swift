import DequeModule
import Synchronization

/// A FIFO counting semaphore for async code, with timeouts and cancellation.
///
/// Used for the checkout lanes of the synchronous endpoint (first come, first served, as
/// customers in line) and for the payment gateway's concurrency limit.
///
/// Hand-written on purpose: none of the listed packages (swift-async-algorithms, swift-nio,
/// swift-collections) ships an async semaphore.
public final class AsyncSemaphore: Sendable {
    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Bool, Never>
    }

    private struct State {
        var available: Int
        var waiters: Deque<Waiter> = []
        var nextID: UInt64 = 0
        var abandoned: Set<UInt64> = []
    }

    private let state: Mutex<State>
    /// How many permits exist.
    public let permits: Int

    public init(permits: Int) {
        precondition(permits > 0, "a semaphore needs at least one permit")
        self.permits = permits
        self.state = Mutex(State(available: permits))
    }

    /// Tasks waiting for a permit now.
    public var waiting: Int { state.withLock { $0.waiters.count } }

    /// Permits in use now.
    public var inUse: Int { state.withLock { permits - $0.available } }

    /// Takes a permit without waiting, if one is free.
    public func tryAcquire() -> Bool {
        state.withLock { state in
            guard state.available > 0, state.waiters.isEmpty else { return false }
            state.available -= 1
            return true
        }
    }

    /// Waits for a permit (in arrival order). Returns false if `timeout` passed or the task was
    /// cancelled first; then no permit is held.
    public func acquire(timeout: Duration? = nil) async -> Bool {
        if tryAcquire() { return true }
        let id = state.withLock { state -> UInt64 in
            state.nextID &+= 1
            return state.nextID
        }
        guard let timeout else { return await wait(id) }
        return await withTaskGroup(of: Bool?.self) { group in
            group.addTask { await self.wait(id) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            var acquired = false
            while let result = await group.next() {
                if let result {
                    acquired = result
                    break
                }
                // Timed out: withdraw, unless the permit was handed over meanwhile.
                self.abandon(id)
            }
            group.cancelAll()
            return acquired
        }
    }

    /// Returns a permit; the longest-waiting task gets it.
    public func release() {
        let next = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            if let waiter = state.waiters.popFirst() { return waiter.continuation }
            state.available = min(permits, state.available + 1)
            return nil
        }
        next?.resume(returning: true)
    }

    private func wait(_ id: UInt64) async -> Bool {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let immediate = state.withLock { state -> Bool? in
                    if state.abandoned.remove(id) != nil { return false }
                    if state.available > 0, state.waiters.isEmpty {
                        state.available -= 1
                        return true
                    }
                    state.waiters.append(Waiter(id: id, continuation: continuation))
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            abandon(id)
        }
    }

    private func abandon(_ id: UInt64) {
        let continuation = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            if let index = state.waiters.firstIndex(where: { $0.id == id }) {
                return state.waiters.remove(at: index).continuation
            }
            state.abandoned.insert(id)
            return nil
        }
        continuation?.resume(returning: false)
    }
}
