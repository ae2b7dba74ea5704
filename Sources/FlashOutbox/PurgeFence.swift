import FlashBackend
import FlashCore
import Foundation
import Synchronization

/// The latest purge of the external payments queue, as every process of the fleet sees it
/// (kept in the fleet's shared values, so a purge through one process is known to all, and
/// outlives the process that made it).
///
/// SQS's PurgeQueue deletes every message sent before the call, and goes on deleting for up to
/// 60 s after it returns, messages sent meanwhile included. So while a purge is recent:
/// - no relay publishes (``holdsPublishing()``): an order placed after the purge keeps its
///   message in the outbox until the window has passed, and is then charged as usual;
/// - an order whose message was relayed before the purge is an orphan (``orphanCutoff()``),
///   and the reconcilers of every process settle it within minutes;
/// - the purge counts as settled after a complete pass over the open orders that started
///   ``settleAfter`` past it (a relay's publish from just before the purge has by then deleted
///   its messages from the outbox, so its orders are seen as relayed); publishing resumes
///   ``margin`` after that, longer than any process reads a stale record.
public final class PurgeFence: Sendable {
    /// One purge, as stored.
    public struct Record: Codable, Sendable, Equatable {
        /// When the purge was asked for (Unix ms).
        public var startedAt: Int64
        /// No relay publishes before this (Unix ms).
        public var holdUntil: Int64
        /// Whether the orders it orphaned have been settled.
        public var settled: Bool
    }

    static let valueName = "payments-queue.purge"
    let registry: any FleetRegistry
    /// How long SQS may go on deleting after a PurgeQueue (60 s), and a little more.
    public let window: Duration
    /// How long after the purge a pass must start to count (longer than a relay's outbox lease).
    public let settleAfter: Duration
    /// How long publishing stays held after the purge is settled.
    public let margin: Duration
    /// How long a read of the record is reused.
    let freshness: Duration
    private let cache = Mutex<(record: Record?, at: ContinuousClock.Instant)?>(nil)

    public init(registry: any FleetRegistry, window: Duration = .seconds(65), settleAfter: Duration = .seconds(15),
                margin: Duration = .seconds(10), freshness: Duration = .seconds(1)) {
        self.registry = registry
        self.window = window
        self.settleAfter = settleAfter
        self.margin = margin
        self.freshness = freshness
    }

    /// Records a purge starting now (before the PurgeQueue call); returns its instant.
    func begin() async throws -> Int64 {
        let now = WallClock.nowMillis()
        let record = Record(startedAt: now, holdUntil: now + window.asMilliseconds, settled: false)
        try await registry.setValue(try Self.encode(record), named: Self.valueName)
        cache.withLock { $0 = (record, .now) }
        return now
    }

    /// The latest purge (read at most once per ``freshness`` unless `fresh`); nil when none was.
    public func current(fresh: Bool = false) async throws -> Record? {
        if !fresh, let cached = cache.withLock({ $0 }), ContinuousClock.now - cached.at < freshness { return cached.record }
        let record = try await registry.value(named: Self.valueName).flatMap { try? JSONDecoder().decode(Record.self, from: Data($0.utf8)) }
        cache.withLock { $0 = (record, .now) }
        return record
    }

    /// Whether relays must not publish now. When the record cannot be read, they must not
    /// either (the backend they would delete from is away too).
    public func holdsPublishing() async -> Bool {
        let record: Record?
        do {
            record = try await current()
        } catch {
            return true
        }
        guard let record else { return false }
        return !record.settled || WallClock.nowMillis() < record.holdUntil
    }

    /// Orders placed before this (Unix ms) whose message was relayed lost it to a purge not yet
    /// settled; 0 when there is none.
    public func orphanCutoff() async throws -> Int64 {
        guard let record = try await current(), !record.settled else { return 0 }
        return record.startedAt
    }

    /// A complete pass over the open orders, which started at `passStart` (Unix ms), has
    /// settled the orphans it found: the purge is settled if the pass started late enough.
    public func passCompleted(startedAt passStart: Int64) async throws {
        guard let record = try await current(fresh: true), !record.settled,
              passStart >= record.startedAt + settleAfter.asMilliseconds else { return }
        var settled = record
        settled.settled = true
        settled.holdUntil = max(record.holdUntil, WallClock.nowMillis() + margin.asMilliseconds)
        // Only if no other purge began meanwhile: that one's orphans are not settled yet.
        if try await registry.replaceValue(named: Self.valueName, from: try Self.encode(record), to: try Self.encode(settled)) {
            cache.withLock { $0 = (settled, .now) }
        }
    }

    static func encode(_ record: Record) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(record), as: UTF8.self)
    }
}
