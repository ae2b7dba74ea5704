import FlashBackend
import FlashCore
import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

// MARK: Wake-ups

extension PostgresDatabase {
    /// Wakes this process's long polls on these queues at once, and other processes' through a
    /// NOTIFY sent after the commit that made the messages visible (see `sendNotifications`).
    func touched(_ queueIDs: some Sequence<Int64>) {
        var ids: [Int64] = []
        for id in queueIDs {
            arrivals.notify(id)
            ids.append(id)
        }
        guard !ids.isEmpty else { return }
        unannounced.withLock { $0.formUnion(ids) }
        announcements.continuation.yield()
    }

    /// Sends the pending NOTIFYs, one statement for every queue touched since the last one, each
    /// time ``touched(_:)`` wakes it; a child task of ``run()``.
    ///
    /// Why not NOTIFY inside the transaction that sends: PostgreSQL serialises every committing
    /// transaction that has notified (a database-wide lock held through its WAL flush), so
    /// notifying senders cannot share a flush. Measured here: 64 concurrent single-message senders
    /// made 2.1k sends/s that way, against pgbench's ~15k single-row INSERTs/s. Out of the
    /// transaction, only this one statement at a time takes that lock, and a burst of sends
    /// costs one NOTIFY. A NOTIFY lost to a crash between the commit and this statement delays
    /// other processes' pickup by at most their once-a-second poll; nothing is lost.
    func sendNotifications() async {
        for await _ in announcements.stream {
            let ids: [Int64] = unannounced.withLock { pending in
                defer { pending = [] }
                return Array(pending)
            }
            guard !ids.isEmpty else { continue }
            // Not through `query`: a background statement must not mark the server unreachable
            // (that fails every request for a moment), and while it is marked, there is no point.
            guard WallClock.nowMillis() >= unreachableUntil.load(ordering: .relaxed) else { continue }
            do {
                let statement: PostgresQuery = "SELECT pg_notify(\(channel), q.id::text) FROM unnest(\(ids)::bigint[]) AS q(id)"
                _ = try await bounded { connection, _ in try await connection.query(statement, logger: self.logger).get() }
            } catch {
                logger.debug("NOTIFY failed; other processes' polls will look within a second", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Holds one connection LISTENing on ``channel`` and wakes the long polls of the queue each
    /// notification names. After a reconnect every poll is woken (notifications sent meanwhile
    /// are lost); the polls also look at least once a second (``PostgresMessageQueue``). A child
    /// task of ``run()``, from the moment ``open()`` has succeeded.
    func listen() async {
        for await _ in opened.stream {}
        while !Task.isCancelled {
            do {
                try await client.withConnection { connection in
                    try await connection.listen(on: channel) { notifications in
                        self.arrivals.notifyAll()
                        for try await notification in notifications {
                            if let id = Int64(notification.payload) { self.arrivals.notify(id) } else { self.arrivals.notifyAll() }
                        }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.debug("LISTEN connection lost; reconnecting", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
    }
}
