import FlashCore
import FlashQueue
import Logging
import ServiceLifecycle
import Synchronization

/// Publishes the outbox: takes payment messages from the backend's local outbox queue, in
/// batches of up to 10, publishes each batch to the payments destination (SNS PublishBatch or
/// SQS SendMessageBatch), and deletes from the outbox what the destination accepted.
///
/// At least once: a message is deleted from the outbox only after the destination accepted it,
/// so a crash (kill -9) between the two publishes it again when its outbox lease runs out, in
/// whichever process relays next. Consumers are idempotent by order id (the order's state and
/// the gateway's idempotency key), so a second copy charges nothing twice.
///
/// Every process on the backend runs one: the outbox is a queue, its leases share the work, and
/// an API process that dies for good leaves nothing behind that the others will not publish.
/// A message the destination refuses, or a batch that fails (AWS unreachable, throttled), stays
/// in the outbox and is tried again after a backoff that doubles up to ``Configuration/longestBackoff``.
public final class OutboxRelay: Service {
    /// The relay's settings.
    public struct Configuration: Sendable {
        /// Batches in flight at once (each up to 10 messages).
        public var concurrency: Int
        /// How long a message taken from the outbox stays hidden from other relays: after a crash,
        /// another relay publishes it this much later. Short, because a publish in progress keeps
        /// its messages leased (``heartbeat``) however long AWS takes.
        public var lease: Duration
        /// How often a publish in progress extends its messages' lease (a third of it by default).
        public var heartbeat: Duration
        /// How long an idle relay waits for a message before asking again (a long poll: a new
        /// message wakes it at once).
        public var wait: Duration
        /// The first wait after a failed publish, doubled per failure up to ``longestBackoff``.
        public var firstBackoff: Duration
        public var longestBackoff: Duration

        /// The lease was once sized to outlast a publish with all its retries (each AWS call gives
        /// up after 30 s), so that a slow AWS would not make a second relay publish the same
        /// batch; a crash then left the batch unpublished for 150 s. Now the lease is short and
        /// extended while the publish runs: a slow AWS still publishes once, a crash is taken
        /// over within seconds.
        public init(concurrency: Int = 8, lease: Duration = .seconds(10), heartbeat: Duration? = nil, wait: Duration = .seconds(1),
                    firstBackoff: Duration = .milliseconds(200), longestBackoff: Duration = .seconds(20)) {
            self.concurrency = concurrency
            self.lease = lease
            self.heartbeat = heartbeat ?? lease / 3
            self.wait = wait
            self.firstBackoff = firstBackoff
            self.longestBackoff = longestBackoff
        }
    }

    /// What this process's relay has done.
    public struct Statistics: Sendable, Hashable {
        /// Messages published and deleted from the outbox.
        public var relayed = 0
        /// Batches that failed as a whole, and entries the destination refused.
        public var failures = 0
    }

    public let configuration: Configuration
    let outbox: any MessageQueue
    let destination: any MessagePublisher
    let logger: Logger
    private let state = Mutex(Statistics())
    private let failureStreak = Atomic<Int>(0)
    /// Whether a purge held publishing at the last turn (for the log).
    private let holding = Atomic<Bool>(false)
    /// Set at graceful shutdown: no new batch is taken.
    private let stopping = Atomic<Bool>(false)

    /// Holds publishing while a purge of the destination is recent (nil: never held).
    let fence: PurgeFence?

    public init(configuration: Configuration = Configuration(), outbox: any MessageQueue, destination: any MessagePublisher,
                fence: PurgeFence? = nil, logger: Logger) {
        self.configuration = configuration
        self.outbox = outbox
        self.destination = destination
        self.fence = fence
        self.logger = logger
    }

    public var statistics: Statistics { state.withLock { $0 } }

    /// Relays until graceful shutdown. Shutdown stops taking new batches; a batch in flight is
    /// published and deleted first (or left leased, and published again after a restart).
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                for _ in 0..<max(1, configuration.concurrency) {
                    group.addTask { await self.loop() }
                }
            }
        } onGracefulShutdown: {
            self.stopping.store(true, ordering: .relaxed)
        }
    }

    private func loop() async {
        while !stopping.load(ordering: .relaxed), !Task.isCancelled {
            do {
                // Only a publish that went through ends a failure streak (an idle loop says nothing).
                if case .published = try await relayOnce() { failureStreak.store(0, ordering: .relaxed) }
            } catch is CancellationError {
                return
            } catch {
                let failures = failureStreak.add(1, ordering: .relaxed).newValue
                state.withLock { $0.failures += 1 }
                if failures == 1 || failures.isMultiple(of: 20) {
                    logger.warning("outbox relay could not publish; the messages stay in the outbox and are tried again",
                                   metadata: ["destination": "\(destination.destination)", "error": "\(error)", "failures": "\(failures)"])
                }
                do { try await Task.sleep(for: backoff(after: failures)) } catch { return }
            }
        }
    }

    /// The wait after `failures` failures in a row.
    func backoff(after failures: Int) -> Duration {
        min(configuration.longestBackoff, configuration.firstBackoff * (1 << min(max(failures - 1, 0), 16)))
    }

    /// What one turn of the relay did.
    public enum Outcome: Sendable, Equatable {
        /// Nothing was waiting, or a purge holds publishing.
        case idle
        /// Every message taken was published (and deleted from the outbox).
        case published(Int)
        /// The destination refused this many of the messages taken (the rest went through).
        case refused(Int)
    }

    /// Takes one batch from the outbox, publishes it and deletes what was accepted; throws when
    /// the batch failed as a whole (the messages stay in the outbox, hidden for a backoff).
    @discardableResult
    public func relayOnce() async throws -> Outcome {
        var generation: Int?
        if let fence {
            let (held, current) = await fence.holdsPublishing()
            generation = current
            if holding.exchange(held, ordering: .relaxed) != held {
                logger.notice(held ? "a purge of the payments queue holds publishing until its orphans are settled and SQS has stopped deleting"
                                   : "publishing resumes after the purge")
            }
            if held {
                // A purge is recent: what is sent now could be deleted with the backlog.
                try await Task.sleep(for: configuration.wait == .zero ? .milliseconds(100) : configuration.wait)
                return .idle
            }
        }
        let messages = try await outbox.receive(maxMessages: QueueLimits.maxBatchSize, wait: configuration.wait,
                                                visibilityTimeout: configuration.lease)
        guard !messages.isEmpty else { return .idle }
        let accepted: [Bool]
        do {
            accepted = try await keepingLeased(messages) { [destination] in try await destination.publishBatch(messages.map(\.body)) }
        } catch {
            // Kept in the outbox: visible again after the backoff, for this relay or another.
            let delay = backoff(after: failureStreak.load(ordering: .relaxed) + 1)
            for message in messages { try? await outbox.changeVisibility(message.receiptHandle, timeout: delay) }
            throw error
        }
        if let fence, let generation, await fence.publishOverlappedPurge(since: generation) {
            // A purge began while this batch was out: SQS may have deleted it. Kept in the
            // outbox, it is published again once the purge is over (consumers take a duplicate).
            for message in messages { try? await outbox.changeVisibility(message.receiptHandle, timeout: .seconds(1)) }
            logger.notice("a purge began while a batch was being published; it stays in the outbox to be published again after the purge",
                          metadata: ["messages": "\(messages.count)"])
            return .idle
        }
        let sent = zip(messages, accepted).filter(\.1).map(\.0.receiptHandle)
        if !sent.isEmpty {
            // A delete that fails (the backend is briefly away) leaves the message leased: it is
            // published again when the lease ends, which consumers take as a duplicate.
            _ = try await outbox.deleteBatch(sent)
        }
        state.withLock { $0.relayed += sent.count }
        let refused = messages.count - sent.count
        if refused > 0 {
            state.withLock { $0.failures += refused }
            let delay = backoff(after: failureStreak.add(1, ordering: .relaxed).newValue)
            for (message, ok) in zip(messages, accepted) where !ok {
                try? await outbox.changeVisibility(message.receiptHandle, timeout: delay)
            }
            logger.warning("the destination refused outbox messages; they are tried again",
                           metadata: ["destination": "\(destination.destination)", "refused": "\(refused)"])
            return .refused(refused)
        }
        return .published(sent.count)
    }

    /// Runs `publish` while extending the lease of `messages` every ``Configuration/heartbeat``,
    /// so that no other relay takes them while it runs, however long it takes; a relay that dies
    /// stops extending, and its messages are another's a lease later. An extension that fails
    /// (the backend briefly away) is tried at the next beat.
    private func keepingLeased<T: Sendable>(_ messages: [ReceivedMessage], _ publish: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await publish() }
            group.addTask { [outbox, configuration] in
                while true {
                    try await Task.sleep(for: configuration.heartbeat)
                    // All at once: one slow extension must not let the others' leases run out.
                    await withDiscardingTaskGroup { beat in
                        for message in messages {
                            beat.addTask { try? await outbox.changeVisibility(message.receiptHandle, timeout: configuration.lease) }
                        }
                    }
                }
            }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let result { return result }
            }
            throw CancellationError()
        }
    }
}
