import FlashBackend
import FlashCore
import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

extension PostgresDatabase {
    /// Leases a connection and runs `body` on it: the wait for a connection gets half of
    /// ``Configuration/operationTimeout`` (or `timeout`), and `body` gets all of it from the
    /// moment it has one (so a call ends within 1.5 times the limit). `body` runs on the connection's event loop (``EventLoopTaskExecutor``):
    /// between its statements it does not queue behind other work on Swift's global executor.
    ///
    /// The two limits are separate so that the server always gives a statement up first: it
    /// cancels a statement at 80% of the limit from the statement's start (`statement_timeout`),
    /// and the call's own deadline counts from when its statements could start. A deadline that
    /// also counted the wait for a connection could close a connection whose statement, waiting
    /// on a hot row's lock, then went on to commit after its caller was told 503 (PostgreSQL does
    /// not notice a closed socket while a statement waits on a lock).
    ///
    /// postgres-nio does not abandon a statement when its task is cancelled (it waits for the
    /// server's answer), so a deadline alone cannot free a caller whose statement hangs on a
    /// connection that died without a reset, or on a server that stopped. At the deadline the
    /// connection in use is closed: its statement fails at once, the caller gets
    /// ``BackendUnavailable``, and the pool opens a fresh connection. Hand-written: neither
    /// postgres-nio nor FlashCore's `withTimeout` (which waits for its operation) does this.
    ///
    /// What the caller is told follows ``Call/mayCommit()``: a failure without a server's answer
    /// after `body` marked that its commit may be under way is ``BackendUnavailable/Outcome/unknown``.
    func bounded<T: Sendable>(timeout: Duration? = nil,
                                      _ body: @escaping @Sendable (PostgresConnection, Call) async throws -> T) async throws -> T {
        let call = Call()
        let answer = FirstAnswer<T>()
        let limit = timeout ?? configuration.operationTimeout
        let clock = ContinuousClock()
        let started = clock.now
        // The work is not a child task: a group waits for every child, and the point is not to
        // wait for a statement that does not end. It is tracked, and ``run()`` waits for it
        // (its connection closed by then) before the connections' event loops stop.
        let id = workIDs.add(1, ordering: .relaxed).newValue
        let work = inFlight.withLock { inFlight in
            let work = Task {
                defer { self.inFlight.withLock { _ = $0.removeValue(forKey: id) } }
                do {
                    let result = try await self.client.withConnection { connection in
                        // A connection that came after the call gave up waiting for one is not used.
                        guard call.begin(on: connection, at: clock.now) else { throw TimeoutError(limit: limit) }
                        let outcome: Result<T, any Error>
                        do {
                            outcome = .success(try await withTaskExecutorPreference(self.loopExecutors.executor(for: connection.eventLoop)) {
                                try await body(connection, call)
                            })
                        } catch {
                            outcome = .failure(error)
                        }
                        // A connection the deadline is closing goes back to the pool closed, never
                        // to another call that its close would cut.
                        if call.end() { try? await connection.close() }
                        return try outcome.get()
                    }
                    answer.give(.success(result))
                } catch {
                    answer.give(.failure(call.verdict(on: error)))
                }
            }
            inFlight[id] = work
            return work
        }
        // The deadline is not a child task either: a caller cancelled while its statement hangs
        // must still be freed at the deadline (postgres-nio waits for a statement's answer
        // whatever the task's cancellation), and a timed-out caller must not wait for its
        // connection to close (TLS's close waits for the peer). It is tracked as the work is,
        // and ``run()`` waits for it; an answered call cancels it.
        let deadlineID = workIDs.add(1, ordering: .relaxed).newValue
        let deadline = inFlight.withLock { inFlight in
            let deadline = Task { [logger] in
                defer { self.inFlight.withLock { _ = $0.removeValue(forKey: deadlineID) } }
                guard (try? await Task.sleep(until: started + limit / 2, clock: clock)) != nil else { return }
                // The wait for a connection is over; the statements, if they started, get their own limit.
                if let began = call.beganOrAbandon(), began + limit > clock.now {
                    guard (try? await Task.sleep(until: began + limit, clock: clock)) != nil else { return }
                }
                // Decided at once with the work's commit point: either its COMMIT (or autocommitted
                // statement) was already marked, and the answer is "unknown", or it is never sent.
                guard answer.give(.failure(call.expire(limit: limit))) else { return }
                work.cancel()
                if let stuck = call.claimForClosing() {
                    logger.warning("closing a PostgreSQL connection that did not answer in time", metadata: ["limit": "\(limit)"])
                    try? await stuck.close()
                }
            }
            inFlight[deadlineID] = deadline
            return deadline
        }
        defer { deadline.cancel() }
        return try await withTaskCancellationHandler {
            try await answer.value()
        } onCancel: {
            work.cancel()
        }
    }
}

/// The first of several answers to one call (the work's, or its deadline's); later ones are dropped.
final class FirstAnswer<T: Sendable>: Sendable {
    private struct State {
        var result: Result<T, any Error>?
        var waiter: CheckedContinuation<T, any Error>?
    }

    private let state = Mutex(State())

    /// Gives the answer unless one was given; returns whether this one counts.
    @discardableResult
    func give(_ result: Result<T, any Error>) -> Bool {
        let (taken, waiter): (Bool, CheckedContinuation<T, any Error>?) = state.withLock { state in
            guard state.result == nil else { return (false, nil) }
            state.result = result
            defer { state.waiter = nil }
            return (true, state.waiter)
        }
        waiter?.resume(with: result)
        return taken
    }

    /// Waits for the answer.
    func value() async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let ready: Result<T, any Error>? = state.withLock { state in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}

/// One bounded call's progress: the connection it uses (for its deadline to close), when it got
/// it, whether its commit may have been sent, and whether its deadline passed. The work and the
/// deadline decide under one lock, so that "nothing was stored" is never said of a call whose
/// COMMIT goes out afterwards.
final class Call: Sendable {
    private struct State {
        var connection: PostgresConnection?
        var began: ContinuousClock.Instant?
        var abandoned = false
        var mayCommit = false
        var expired = false
        var closing = false
    }

    private let state = Mutex(State())

    /// Takes `connection` for the call, unless the call gave up waiting for one.
    func begin(on connection: PostgresConnection, at instant: ContinuousClock.Instant) -> Bool {
        state.withLock { state in
            guard !state.abandoned else { return false }
            state.connection = connection
            state.began = instant
            return true
        }
    }

    /// The work is done with its connection; returns whether the deadline is closing it (the
    /// work then closes it too before the pool takes it back).
    func end() -> Bool {
        state.withLock { state in
            state.connection = nil
            return state.closing
        }
    }

    /// When the call got its connection; if it has none yet, the call gives up waiting.
    func beganOrAbandon() -> ContinuousClock.Instant? {
        state.withLock { state in
            if state.began == nil { state.abandoned = true }
            return state.began
        }
    }

    /// For the deadline: the connection still in use, marked as being closed; nil when the work
    /// has already given it back (it may serve another call by now).
    func claimForClosing() -> PostgresConnection? {
        state.withLock { state in
            guard let connection = state.connection else { return nil }
            state.closing = true
            return connection
        }
    }

    /// From now on the call's writes may commit on the server: a lost connection leaves them
    /// unknown. False when the deadline has passed: the caller was told nothing was stored, so
    /// nothing may be sent that could commit.
    func mayCommit() -> Bool {
        state.withLock { state in
            guard !state.expired else { return false }
            state.mayCommit = true
            return true
        }
    }

    /// For the deadline: the call is over; what its caller is told.
    func expire(limit: Duration) -> any Error {
        let committing = state.withLock { state in
            state.expired = true
            return state.mayCommit
        }
        let expired = TimeoutError(limit: limit)
        return committing ? UnconfirmedCommit(underlying: expired) : expired
    }

    /// What to tell the caller of a call that failed with `error`. A server's answer (an error
    /// with a SQLSTATE) is definite: the statement, or the transaction, did not commit; so is a
    /// COMMIT answered ROLLBACK, and an error of this process (a row it could not decode). A
    /// lost connection after the commit may have been sent is unknown.
    func verdict(on error: any Error) -> any Error {
        guard state.withLock({ $0.mayCommit }), PostgresDatabase.sqlState(error) == nil else { return error }
        switch error {
        case is BackendUnavailable, is CancellationError, is TransactionRolledBack, is PostgresDecodingError, is UnconfirmedCommit:
            return error
        default:
            return UnconfirmedCommit(underlying: error)
        }
    }
}
