/// A durable message queue with the semantics of AWS SQS (standard queues).
///
/// The contract, which every backend passes (see the shared contract tests):
/// - ``send(_:delay:)`` and ``sendBatch(_:)`` (at most 10 entries) return message ids; a message
///   can be delayed by 0…900 s. Once a send returns, the message is durable.
/// - ``receive(maxMessages:wait:visibilityTimeout:)`` long-polls: it returns as soon as a message
///   is visible, or an empty array after `wait` (0…20 s). Each delivery carries a fresh
///   ``ReceiptHandle`` and an incremented ``ReceivedMessage/receiveCount``.
/// - A received message stays invisible for its visibility timeout (the lease), then is delivered
///   again (at-least-once). ``changeVisibility(_:timeout:)`` extends a lease or, with zero, gives the
///   message back at once.
/// - ``delete(_:)`` needs the current receipt handle: a stale handle (its lease expired and the
///   message was delivered again) is refused with ``QueueError/receiptHandleInvalid(_:)`` and
///   does not delete the newer delivery.
/// - A message received more than its queue's `maxReceiveCount` times moves to the queue's
///   dead-letter queue instead of being delivered again.
/// - Messages older than the retention period are dropped and counted.
public protocol MessageQueue: Sendable {
    /// The queue's name.
    var name: String { get }

    /// Sends one message; returns its message id once it is durable.
    func send(_ body: String, delay: Duration) async throws -> String

    /// Sends 1…10 messages in one durable step, all or nothing; returns their ids in order.
    func sendBatch(_ messages: [OutgoingMessage]) async throws -> [String]

    /// Receives up to `maxMessages` (1…10) messages, waiting up to `wait` (0…20 s) for the first.
    ///
    /// - Parameter visibilityTimeout: the lease for these deliveries; `nil` uses the queue's default.
    func receive(maxMessages: Int, wait: Duration, visibilityTimeout: Duration?) async throws -> [ReceivedMessage]

    /// Sets the remaining lease of a delivery to `timeout` from now (0 gives it back at once).
    func changeVisibility(_ receipt: ReceiptHandle, timeout: Duration) async throws

    /// Deletes the message of a current delivery.
    func delete(_ receipt: ReceiptHandle) async throws

    /// Deletes 1…10 deliveries; one result per entry, in order.
    func deleteBatch(_ receipts: [ReceiptHandle]) async throws -> [Result<Void, QueueError>]

    /// Gives deliveries back *untried*: each message is visible again at once and its delivery
    /// is not counted, so its receive count (and the dead-letter decision that rests on it) is
    /// what it was before this receive. For a consumer that received a message and never worked
    /// on it (a prefetch buffer emptied at shutdown). Stale receipts are skipped.
    ///
    /// This goes beyond SQS, which counts every receive; a backend that cannot uncount a
    /// delivery gives the message back (visibility 0) and says so in its documentation.
    /// Returns, per receipt, whether it was current (a stale one changed nothing).
    @discardableResult
    func returnUntried(_ receipts: [ReceiptHandle]) async throws -> [Bool]

    /// Drops the messages that outlived the retention period now, and returns how many. Receives
    /// also drop them; this lets a maintenance task enforce retention when nobody receives.
    @discardableResult
    func sweepExpired() async throws -> Int

    /// Deletes every message in the queue (not in its dead-letter queue).
    func purge() async throws

    /// Approximate counts, as SQS reports them.
    func statistics() async throws -> QueueStatistics

    /// Roughly how many visible messages were sent at or before `millis` (Unix ms): how many are
    /// ahead of a message sent then. An estimate; a backend that cannot order by send time may
    /// answer with all visible messages. Counts at most ``QueueLimits/countCeiling`` (answered
    /// then: "that many or more"), so that its cost does not grow with the backlog.
    func countVisible(sentAtOrBefore millis: Int64) async throws -> Int
}

extension MessageQueue {
    /// Sends one message without delay.
    public func send(_ body: String) async throws -> String {
        try await send(body, delay: .zero)
    }

    /// Receives with the queue's default visibility timeout.
    public func receive(maxMessages: Int = 1, wait: Duration = .zero) async throws -> [ReceivedMessage] {
        try await receive(maxMessages: maxMessages, wait: wait, visibilityTimeout: nil)
    }
}

/// A fan-out topic with the semantics of AWS SNS with raw message delivery: a published message is
/// delivered, unchanged, to every subscribed queue.
public protocol Topic: Sendable {
    /// The topic's name.
    var name: String { get }

    /// Subscribes a queue (by name) to the topic. Subscribing twice is harmless.
    func subscribe(queue: String) async throws

    /// The names of the subscribed queues.
    func subscriptions() async throws -> [String]

    /// Publishes a message to every subscribed queue in one durable step; returns its message id.
    func publish(_ body: String) async throws -> String
}
