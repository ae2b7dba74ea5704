import DequeModule
import FlashQueue
import FlashOrders
import Synchronization

/// A received message with its order, handed from the fetchers to a worker.
struct Job: Sendable {
    var message: ReceivedMessage
    var order: Order?
    var orderID: String?
    /// No later than the start of this delivery's lease (continuous clock): the heartbeat counts from it.
    var leasedAt: ContinuousClock.Instant
}

/// Hands jobs from the fetchers to idle workers, and tells the fetchers how many to fetch.
///
/// A fetcher asks for ``demand()``: idle workers plus a small prefetch, minus what is already
/// buffered or being fetched. So the pool never holds leases for work it cannot start soon, and
/// a worker that finishes finds its next job waiting instead of waiting for a receive.
///
/// Hand-written on purpose: swift-async-algorithms' AsyncChannel hands elements over one by one
/// but cannot report how many consumers wait, which is what sizes each receive.
final class WorkDispatcher: Sendable {
    private struct State {
        var buffer: Deque<Job> = []
        var idle: Deque<CheckedContinuation<Job?, Never>> = []
        var reserved = 0
        var demandWaiters: [CheckedContinuation<Int, Never>] = []
        var closed = false
        var returned: [Job] = []
        /// Worker loops running (asking for jobs or working on one).
        var workers = 0
        /// Worker loops wanted: those beyond it retire as they next ask for a job.
        var target = 0
        var prefetch = 1
    }

    private let state = Mutex(State())

    init() {}

    /// Jobs kept ready beyond the idle workers of a pool of `workers`: a fifth of it (at least
    /// a batch, at most the pool), so bursts of finishing workers find work waiting, while a
    /// buffered job waits about L/5 at most: far inside its lease.
    static func prefetch(forWorkers workers: Int) -> Int {
        max(1, min(workers, max(QueueLimits.maxBatchSize, workers / 5)))
    }

    /// Sets how many worker loops should run; returns how many the caller must start, and the
    /// buffered jobs beyond the smaller pool's prefetch, which the caller gives back untried
    /// (kept, they would wait for the few workers left past their leases). Loops beyond the
    /// new count retire when they next ask for a job (``next()`` answers nil), never in the
    /// middle of one: idle ones at once, busy ones when their job is done.
    func resize(to target: Int) -> (start: Int, excess: [Job]) {
        let (start, excess, retired, wake) = state.withLock { state -> (Int, [Job], [CheckedContinuation<Job?, Never>], [CheckedContinuation<Int, Never>]) in
            if state.closed { return (0, [], [], []) }
            state.target = max(0, target)
            state.prefetch = Self.prefetch(forWorkers: state.target)
            var retired: [CheckedContinuation<Job?, Never>] = []
            while state.workers > state.target, let idle = state.idle.popLast() {
                state.workers -= 1
                retired.append(idle)
            }
            let start = max(0, state.target - state.workers)
            state.workers += start
            var excess: [Job] = []
            while state.buffer.count > state.prefetch, let newest = state.buffer.popLast() { excess.append(newest) }
            return (start, excess, retired, takeDemandWaiters(&state))
        }
        for worker in retired { worker.resume(returning: nil) }
        for waiter in wake { waiter.resume(returning: -1) }
        return (start, excess)
    }

    /// Takes every job received and not yet handed to a worker (to give them back untried).
    func takeBuffered() -> [Job] {
        state.withLock { state in
            defer { state.buffer.removeAll() }
            return Array(state.buffer)
        }
    }

    /// Worker loops wanted now.
    var target: Int { state.withLock { $0.target } }

    /// Jobs received and not yet handed to a worker.
    var buffered: Int { state.withLock { $0.buffer.count } }

    /// Waits until some worker could use a job; returns how many to fetch (1…10), reserving
    /// them. Returns 0 once closed.
    func demand() async -> Int {
        while true {
            let wanted = await demandOnce()
            if wanted >= 0 { return wanted }
        }
    }

    /// How many to fetch now, 0 when closed, or -1 after waiting (ask again).
    private func demandOnce() async -> Int {
        await withCheckedContinuation { (continuation: CheckedContinuation<Int, Never>) in
            let now = state.withLock { state -> Int? in
                if state.closed { return 0 }
                let wanted = Self.wanted(state)
                if wanted > 0 {
                    state.reserved += wanted
                    return wanted
                }
                state.demandWaiters.append(continuation)
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }

    private static func wanted(_ state: State) -> Int {
        min(QueueLimits.maxBatchSize, state.idle.count + state.prefetch - state.buffer.count - state.reserved)
    }

    /// Delivers fetched jobs (after a ``demand()`` of `reserved`); returns those that no one
    /// can take because the dispatcher closed meanwhile.
    func deliver(_ jobs: [Job], reserved: Int) -> [Job] {
        var handoffs: [(CheckedContinuation<Job?, Never>, Job)] = []
        let (leftover, wake) = state.withLock { state -> ([Job], [CheckedContinuation<Int, Never>]) in
            state.reserved -= reserved
            if state.closed { return (jobs, []) }
            for job in jobs {
                if let worker = state.idle.popFirst() {
                    handoffs.append((worker, job))
                } else {
                    state.buffer.append(job)
                }
            }
            return ([], takeDemandWaiters(&state))
        }
        for (worker, job) in handoffs { worker.resume(returning: job) }
        for waiter in wake { waiter.resume(returning: -1) }
        return leftover
    }

    /// The next job for a worker; nil once closed, or when this worker is to retire (more
    /// workers run than ``resize(to:)`` asked for).
    func next() async -> Job? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Job?, Never>) in
            let (job, ready, wake) = state.withLock { state -> (Job?, Bool, [CheckedContinuation<Int, Never>]) in
                if !state.closed, state.workers > state.target {
                    state.workers -= 1
                    return (nil, true, [])
                }
                if let job = state.buffer.popFirst() { return (job, true, takeDemandWaiters(&state)) }
                if state.closed { return (nil, true, []) }
                state.idle.append(continuation)
                return (nil, false, takeDemandWaiters(&state))
            }
            // Fetchers waiting for demand re-ask: a worker just became idle or took a job.
            for waiter in wake { waiter.resume(returning: -1) }
            if ready { continuation.resume(returning: job) }
        }
    }

    /// Stops handing out work: idle workers get nil, fetchers get 0. The buffered jobs are set
    /// aside for ``takeReturned()``. Synchronous, so a graceful-shutdown handler can call it.
    func close() {
        let (idle, waiters) = state.withLock { state -> ([CheckedContinuation<Job?, Never>], [CheckedContinuation<Int, Never>]) in
            state.closed = true
            state.returned.append(contentsOf: state.buffer)
            state.buffer.removeAll()
            let idle = Array(state.idle)
            state.idle.removeAll()
            let waiters = state.demandWaiters
            state.demandWaiters.removeAll()
            return (idle, waiters)
        }
        for worker in idle { worker.resume(returning: nil) }
        for waiter in waiters { waiter.resume(returning: 0) }
    }

    /// The jobs that were buffered when the dispatcher closed, or delivered after; each once.
    func takeReturned() -> [Job] {
        state.withLock { state in
            defer { state.returned.removeAll() }
            return state.returned
        }
    }

    private func takeDemandWaiters(_ state: inout State) -> [CheckedContinuation<Int, Never>] {
        guard !state.demandWaiters.isEmpty, Self.wanted(state) > 0 else { return [] }
        defer { state.demandWaiters.removeAll() }
        return state.demandWaiters
    }
}
