import FlashBackend
import FlashCore
import FlashQueue
import Foundation
import Synchronization

/// The latest purge of the external payments queue, as every process of the fleet sees it
/// (kept in the fleet's shared values, so a purge through one process is known to all, and
/// outlives the process that made it).
///
/// SQS's PurgeQueue deletes every message sent before the call, and goes on deleting for up to
/// 60 s after it returns, messages sent meanwhile included. So, with each purge numbered (its
/// generation):
/// - the purge is recorded before PurgeQueue is called; from then on no relay publishes
///   (``holdsPublishing()``, read fresh for every batch) until the purge is settled and
///   ``window`` has passed since PurgeQueue returned: an order placed meanwhile waits in the
///   outbox and is charged after;
/// - a relay whose publish overlapped the start of a purge (the generation changed between its
///   reads before and after publishing) keeps its messages in the outbox, to publish them again
///   after the hold: what SQS may have deleted is sent again (consumers are idempotent);
/// - so, once PurgeQueue has returned and until the purge is settled, every queued order whose
///   outbox message is gone was relayed before the purge: an orphan (``orphansAllRelayed()``),
///   settled by the reconcilers of every process. No clock of one process is compared with
///   another's, except for the end of the hold;
/// - the purge is settled by a complete orphan pass, in any process, that began ``settleAfter``
///   after that process saw PurgeQueue return (a relay that published just before the purge has
///   deleted its outbox messages by then); publishing resumes ``margin`` after that.
/// A purge is refused (``PurgeInProgress``) while the previous one is unsettled or held. A
/// PurgeQueue that AWS refuses (a client error) is taken for not done: the record is set aside;
/// one that got no answer or a server error may have happened, and is taken for done, as is one
/// whose process died before it returned, after ``abandonAfter``.
public final class PurgeFence: Sendable {
    /// One purge, as stored.
    public struct Record: Codable, Sendable, Equatable {
        /// Which purge: one more than the one before.
        public var generation: Int
        /// When the purge was asked for (Unix ms, the purging process's clock; for operators).
        public var startedAt: Int64
        /// Whether PurgeQueue returned (false while it runs, or if the purging process died).
        public var returned: Bool
        /// No relay publishes before this (Unix ms).
        public var holdUntil: Int64
        /// Whether the orders it orphaned have been settled (or the purge failed: nothing to settle).
        public var settled: Bool
    }

    static let valueName = "payments-queue.purge"
    let registry: any FleetRegistry
    /// How long SQS may go on deleting after a PurgeQueue returns (60 s), and a little more.
    public let window: Duration
    /// How long after this process saw PurgeQueue return a pass must begin to settle the purge.
    public let settleAfter: Duration
    /// How long publishing stays held after the purge is settled.
    public let margin: Duration
    /// How long a read of the record is reused by the orphan scans.
    let freshness: Duration
    private let cache = Mutex<(record: Record?, at: ContinuousClock.Instant)?>(nil)
    /// When this process first saw each generation's PurgeQueue return.
    private let seenReturned = Mutex<(generation: Int, at: ContinuousClock.Instant)?>(nil)
    /// When this process first saw a generation whose PurgeQueue had not returned.
    private let seenRunning = Mutex<(generation: Int, at: ContinuousClock.Instant)?>(nil)
    /// How long a PurgeQueue may run (the AWS client's attempts and backoffs) before its
    /// purging process is taken for dead and the purge for done.
    public let abandonAfter: Duration
    /// The generation whose purge the orphan pass in progress may settle (see ``passBegins()``).
    private let passEligible = Mutex<Int?>(nil)

    public init(registry: any FleetRegistry, window: Duration = .seconds(65), settleAfter: Duration = .seconds(15),
                margin: Duration = .seconds(10), freshness: Duration = .seconds(1), abandonAfter: Duration = .seconds(180)) {
        self.registry = registry
        self.abandonAfter = abandonAfter
        self.window = window
        self.settleAfter = settleAfter
        self.margin = margin
        self.freshness = freshness
    }

    /// Purges through `purge` (PurgeQueue), recorded for the fleet before and after the call.
    func purge(_ purge: () async throws -> Void) async throws {
        let previous = try await current(fresh: true)
        let now = WallClock.nowMillis()
        // One at a time: a second purge would overwrite a record whose orphans are not settled
        // yet (and SQS refuses a PurgeQueue within 60 s of the last anyway).
        if let previous, !previous.settled || now < previous.holdUntil {
            let left = previous.settled ? max(1_000, previous.holdUntil - now) : window.asMilliseconds
            throw PurgeInProgress(retryAfter: .milliseconds(left))
        }
        var record = Record(generation: (previous?.generation ?? 0) + 1, startedAt: now, returned: false,
                            holdUntil: now + window.asMilliseconds, settled: false)
        let stored = try Self.encode(record)
        do {
            if let previous {
                guard try await registry.replaceValue(named: Self.valueName, from: try Self.encode(previous), to: stored) else {
                    throw PurgeInProgress(retryAfter: window)
                }
            } else {
                try await registry.setValue(stored, named: Self.valueName)
            }
        } catch let error as PurgeInProgress {
            throw error
        } catch {
            // PurgeQueue was not called: set the record aside if it was stored after all.
            await setAside(record)
            throw error
        }
        cache.withLock { $0 = (record, .now) }
        do {
            try await purge()
        } catch let error as any RefusedCall where error.didNothing {
            // Refused (access denied, no such queue): nothing orphaned; relays may publish at once.
            await setAside(record)
            throw error
        } catch {
            // No answer, or a server error: the purge may have happened. Taken as returned: its
            // orphans are settled (failed, no charge) rather than left for days.
            var returned = record
            returned.returned = true
            returned.holdUntil = WallClock.nowMillis() + window.asMilliseconds
            _ = try? await replace(record, with: returned)
            throw error
        }
        var returned = record
        returned.returned = true
        returned.holdUntil = WallClock.nowMillis() + window.asMilliseconds
        if try await replace(record, with: returned) { record = returned }
    }

    /// The latest purge (read at most once per ``freshness`` unless `fresh`); nil when none was.
    public func current(fresh: Bool = false) async throws -> Record? {
        if !fresh, let cached = cache.withLock({ $0 }), ContinuousClock.now - cached.at < freshness { return cached.record }
        let record = try await registry.value(named: Self.valueName).flatMap { try? JSONDecoder().decode(Record.self, from: Data($0.utf8)) }
        cache.withLock { $0 = (record, .now) }
        if let record, record.returned {
            seenReturned.withLock { seen in
                if seen?.generation != record.generation { seen = (record.generation, .now) }
            }
        }
        return record
    }

    /// Whether relays must not publish now, read fresh; with it, the generation a relay's
    /// publish starts under (see ``publishOverlappedPurge(since:)``). When the record cannot be
    /// read, they must not publish either (the backend they would delete from is away too).
    public func holdsPublishing() async -> (held: Bool, generation: Int) {
        let record: Record?
        do {
            record = try await current(fresh: true)
        } catch {
            return (true, -1)
        }
        guard let record else { return (false, 0) }
        if !record.returned { await takeOverIfAbandoned(record) }
        return (!record.settled || WallClock.nowMillis() < record.holdUntil, record.generation)
    }

    /// Whether a purge began since a relay read `generation` (or that cannot be told): then
    /// what it published may have been deleted, and stays in the outbox to be sent again.
    public func publishOverlappedPurge(since generation: Int) async -> Bool {
        do {
            return (try await current(fresh: true)?.generation ?? 0) != generation
        } catch {
            return true
        }
    }

    /// Whether every queued order whose outbox message is gone is an orphan now: a purge has
    /// returned and is not settled (nothing was relayed since it began).
    public func orphansAllRelayed() async throws -> Bool {
        guard let record = try await current() else { return false }
        return record.returned && !record.settled
    }

    /// An orphan pass begins (a scan from the first open order): it may settle the purge if
    /// this process saw its PurgeQueue return at least ``settleAfter`` ago.
    func passBegins() async throws {
        let record = try await current(fresh: true)
        let eligible: Int? = seenReturned.withLock { seen in
            guard let record, record.returned, !record.settled, let seen, seen.generation == record.generation,
                  ContinuousClock.now - seen.at >= settleAfter else { return nil }
            return record.generation
        }
        passEligible.withLock { $0 = eligible }
    }

    /// The pass that began last has settled every orphan it found: the purge it was eligible
    /// for is settled, unless another purge began meanwhile.
    func passCompleted() async throws {
        guard let generation = passEligible.withLock({ $0 }), let record = try await current(fresh: true),
              record.generation == generation, record.returned, !record.settled else { return }
        var settled = record
        settled.settled = true
        settled.holdUntil = max(record.holdUntil, WallClock.nowMillis() + margin.asMilliseconds)
        _ = try await replace(record, with: settled)
    }

    /// A PurgeQueue that has not returned for ``abandonAfter`` (as this process has watched it):
    /// its process died before it could say. The purge may have happened, so it is taken as
    /// returned now; its orphans are settled and publishing resumes after the window, rather
    /// than wait for ever.
    private func takeOverIfAbandoned(_ record: Record) async {
        let abandoned = seenRunning.withLock { seen -> Bool in
            if seen?.generation != record.generation { seen = (record.generation, .now) }
            return ContinuousClock.now - seen!.at >= abandonAfter
        }
        guard abandoned else { return }
        var returned = record
        returned.returned = true
        returned.holdUntil = WallClock.nowMillis() + window.asMilliseconds
        _ = try? await replace(record, with: returned)
    }

    /// Marks a purge that did not happen as settled, nothing held.
    private func setAside(_ record: Record) async {
        var failed = record
        failed.settled = true
        failed.holdUntil = WallClock.nowMillis()
        _ = try? await replace(record, with: failed)
    }

    /// Stores `new` in place of `old` if `old` is still the record; whether it did.
    private func replace(_ old: Record, with new: Record) async throws -> Bool {
        guard try await registry.replaceValue(named: Self.valueName, from: try Self.encode(old), to: try Self.encode(new)) else { return false }
        cache.withLock { $0 = (new, .now) }
        if new.returned && !old.returned { seenReturned.withLock { $0 = (new.generation, .now) } }
        return true
    }

    static func encode(_ record: Record) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(record), as: UTF8.self)
    }
}
