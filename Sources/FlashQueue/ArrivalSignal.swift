import Synchronization

/// Wakes long-polling receivers when messages become visible, without a sleep-poll loop.
///
/// Each key (a queue) has a generation counter. A receiver notes the generation, looks for
/// messages, and if it finds none waits until the generation moves on or its timeout passes.
/// Bumping the generation between the look and the wait is not lost: the wait returns at once.
/// An idle receiver is a suspended continuation and costs no CPU.
///
/// Hand-written on purpose: swift-async-algorithms' channels deliver each element to one consumer
/// and have no timeout, and what is needed here is a broadcast "something changed" with one.
public final class ArrivalSignal<Key: Hashable & Sendable>: Sendable {
    private struct Waiter {
        var key: Key
        var continuation: CheckedContinuation<Void, Never>?
        var cancelled: Bool
    }

    private struct State {
        var generations: [Key: UInt64] = [:]
        /// Moved by ``notifyAll()``: part of every key's generation.
        var epoch: UInt64 = 0
        var waiters: [UInt64: Waiter] = [:]
        var nextWaiterID: UInt64 = 0

        func generation(_ key: Key) -> UInt64 { generations[key, default: 0] &+ epoch }
    }

    private let state = Mutex(State())

    public init() {}

    /// The current generation of `key`.
    public func generation(_ key: Key) -> UInt64 {
        state.withLock { $0.generation(key) }
    }

    /// Marks `key` as changed and wakes everyone waiting on it.
    public func notify(_ key: Key) {
        let woken: [CheckedContinuation<Void, Never>] = state.withLock { state in
            state.generations[key, default: 0] &+= 1
            var woken: [CheckedContinuation<Void, Never>] = []
            for (id, waiter) in state.waiters where waiter.key == key {
                if let continuation = waiter.continuation { woken.append(continuation) }
                state.waiters[id] = nil
            }
            return woken
        }
        for continuation in woken { continuation.resume() }
    }

    /// Marks every key as changed and wakes every waiter (a change the caller cannot attribute
    /// to one key, such as a commit by another process).
    public func notifyAll() {
        let woken: [CheckedContinuation<Void, Never>] = state.withLock { state in
            state.epoch &+= 1
            let woken = state.waiters.values.compactMap(\.continuation)
            state.waiters = state.waiters.filter { $0.value.continuation == nil }
            return woken
        }
        for continuation in woken { continuation.resume() }
    }

    /// Waits until `key` moves past `generation`, `timeout` passes, or the task is cancelled.
    public func wait(_ key: Key, after generation: UInt64, timeout: Duration) async {
        guard timeout > .zero else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitForChange(key, after: generation) }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }

    /// Waits until `key` moves past `generation` or the task is cancelled: no timer, no extra task.
    public func wait(_ key: Key, after generation: UInt64) async {
        await waitForChange(key, after: generation)
    }

    private func waitForChange(_ key: Key, after generation: UInt64) async {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiterID &+= 1
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.generation(key) != generation { return true }
                    if state.waiters[id]?.cancelled == true {
                        state.waiters[id] = nil
                        return true
                    }
                    state.waiters[id] = Waiter(key: key, continuation: continuation, cancelled: false)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
                if let waiter = state.waiters[id] {
                    state.waiters[id] = nil
                    return waiter.continuation
                }
                state.waiters[id] = Waiter(key: key, continuation: nil, cancelled: true)
                return nil
            }
            continuation?.resume()
        }
    }
}
