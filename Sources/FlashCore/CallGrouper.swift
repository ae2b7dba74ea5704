import Synchronization

/// Runs concurrent calls in groups: a call made while a group runs waits, and every call waiting
/// when that group ends runs in the next one, as one invocation of `body`. Group commit for any
/// store: N concurrent callers cost one statement and one commit, not N; with one caller it is a
/// plain call, with no added wait.
///
/// A group holds calls in arrival order until their summed `weight` would pass `maxWeight`
/// (a single heavier call still runs, alone). `body` gets the inputs and returns one output per
/// input, in order; if it throws, every call of the group gets that error. A call cancelled
/// while it waits for a group leaves the line with `CancellationError` and never runs; once its
/// group has started, it waits for that group's outcome.
///
/// With an ``AdmissionLine``, a call with a deadline that the line foretells would not start by
/// then is refused on arrival (``LineForecast``); the grouper reports its groups and each such
/// call's wait there.
///
/// Hand-written: none of the listed packages groups request/response calls this way
/// (swift-async-algorithms' chunking works on a sequence with no reply per element).
public final class CallGrouper<Input: Sendable, Output: Sendable>: Sendable {
    /// Runs one group.
    public typealias Body = @Sendable ([Input]) async throws -> [Output]

    private struct Call {
        var id: UInt64
        var input: Input
        var weight: Int
        var continuation: CheckedContinuation<Output, any Error>
        /// When it must have started, and what it gets if it has not.
        var deadline: (instant: ContinuousClock.Instant, refused: @Sendable (AdmissionLine.Refusal) -> any Error)?
        /// When it joined the line.
        var queuedAt: ContinuousClock.Instant
    }

    private struct State {
        var waiting: [Call] = []
        var running = false
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())
    private let maxWeight: Int
    private let body: Body
    /// Admission control's view of this line, if calls with deadlines are refused on arrival.
    public let line: AdmissionLine?

    /// - Parameters:
    ///   - maxWeight: the most summed weight in one group.
    ///   - line: forecasts whether a call with a deadline would start by then (calls of weight
    ///     1 each, `maxWeight` to a group); nil waits every call until its deadline.
    ///   - body: runs a group; returns exactly one output per input.
    public init(maxWeight: Int, line: AdmissionLine? = nil, body: @escaping Body) {
        precondition(maxWeight > 0, "a group needs room for one call")
        self.maxWeight = maxWeight
        self.line = line
        self.body = body
    }

    /// Calls waiting for a group now (not counting those of the group running).
    public var waiting: Int { state.withLock { $0.waiting.count } }

    /// Runs `input` in the next group and returns its output.
    public func call(_ input: Input, weight: Int = 1) async throws -> Output {
        try await call(input, weight: weight, id: newID(), deadline: nil)
    }

    /// Runs `input` in the next group that starts by `deadline` and returns its output; if it
    /// still waits for a group then, it leaves the line, never runs, and throws
    /// `refused(.deadline)`. If the ``line`` foretells on arrival that it would not start in
    /// time, it never joins and throws `refused(.forecast)`. Once its group has started it waits
    /// for that group's outcome, however long.
    public func call(_ input: Input, weight: Int = 1, startingBy deadline: ContinuousClock.Instant,
                     orElse refused: @escaping @Sendable (AdmissionLine.Refusal) -> any Error) async throws -> Output {
        // Past already: never joins. A group forming after it refuses it too (a timer that fired
        // before the call joined the line could not).
        guard deadline > .now else { throw refused(.deadline) }
        let id = newID()
        return try await withThrowingTaskGroup(of: Output?.self) { group in
            group.addTask { try await self.call(input, weight: weight, id: id, deadline: (deadline, refused)) }
            group.addTask {
                // Cancelled when the call ends first.
                guard (try? await Task.sleep(until: deadline, clock: .continuous)) != nil else { return nil }
                self.leave(id, throwing: refused(.deadline))
                return nil
            }
            while let next = try await group.next() {
                if let output = next {
                    group.cancelAll()
                    return output
                }
            }
            throw CancellationError()
        }
    }

    private func newID() -> UInt64 {
        state.withLock { state in
            defer { state.nextID &+= 1 }
            return state.nextID
        }
    }

    /// Takes call `id` out of the line with `error`, if it still waits there.
    private func leave(_ id: UInt64, throwing error: any Error) {
        let left: Call? = state.withLock { state in
            guard let index = state.waiting.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiting.remove(at: index)
        }
        left?.continuation.resume(throwing: error)
    }

    private func call(_ input: Input, weight: Int, id: UInt64,
                      deadline: (instant: ContinuousClock.Instant, refused: @Sendable (AdmissionLine.Refusal) -> any Error)?) async throws -> Output {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                guard !Task.isCancelled else {
                    continuation.resume(throwing: CancellationError())
                    return
                }
                let now = ContinuousClock.now
                let joined = state.withLock { state -> Bool? in
                    if let deadline, let line,
                       !line.admits(ahead: state.waiting.count, running: state.running, deadline: deadline.instant, at: now) {
                        return nil
                    }
                    state.waiting.append(Call(id: id, input: input, weight: weight, continuation: continuation, deadline: deadline, queuedAt: now))
                    guard !state.running else { return false }
                    state.running = true
                    return true
                }
                switch joined {
                case nil: continuation.resume(throwing: deadline!.refused(.forecast))
                case true?: Task { await self.drain() }
                case false?: break
                }
            }
        } onCancel: {
            leave(id, throwing: CancellationError())
        }
    }

    /// Runs groups until no call waits.
    private func drain() async {
        while true {
            let (group, expired): ([Call], [Call]) = state.withLock { state in
                let now = ContinuousClock.now
                var expired: [Call] = []
                state.waiting.removeAll { call in
                    guard let deadline = call.deadline, deadline.instant <= now else { return false }
                    expired.append(call)
                    return true
                }
                var total = 0
                var count = 0
                for call in state.waiting {
                    if count > 0 && total + call.weight > maxWeight { break }
                    total += call.weight
                    count += 1
                }
                let group = Array(state.waiting.prefix(count))
                state.waiting.removeFirst(count)
                if group.isEmpty { state.running = false }
                return (group, expired)
            }
            for call in expired { call.continuation.resume(throwing: call.deadline!.refused(.deadline)) }
            guard !group.isEmpty else { return }
            if let line {
                let now = ContinuousClock.now
                line.groupStarted(at: now)
                for call in group where call.deadline != nil { line.began(waited: now - call.queuedAt, at: now) }
            }
            defer { line?.groupEnded() }
            do {
                let outputs = try await body(group.map(\.input))
                precondition(outputs.count == group.count, "a group's body must return one output per input")
                for (call, output) in zip(group, outputs) { call.continuation.resume(returning: output) }
            } catch {
                for call in group { call.continuation.resume(throwing: error) }
            }
        }
    }
}
