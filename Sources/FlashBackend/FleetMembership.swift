import FlashCore
import Foundation
import Logging
import Synchronization
import ServiceLifecycle

/// This process's membership of the fleet: a Service that writes its ``ProcessRecord`` to the
/// registry every ``Configuration/heartbeat``, prunes long-dead records, and removes its own at
/// graceful shutdown.
public final class FleetMembership: Service {
    public struct Configuration: Sendable {
        /// Time between heartbeats.
        public var heartbeat: Duration
        /// A process silent this long is not listed (three heartbeats missed, and some).
        public var staleAfter: Duration
        /// A process silent this long has its record deleted.
        public var forgetAfter: Duration

        public init(heartbeat: Duration = .seconds(1), staleAfter: Duration = .milliseconds(3_500), forgetAfter: Duration = .seconds(3_600)) {
            self.heartbeat = heartbeat
            self.staleAfter = staleAfter
            self.forgetAfter = forgetAfter
        }
    }

    /// This process's figures at a heartbeat.
    public struct Load: Sendable {
        public var workers: Int
        public var busy: Int
        public var acceptedPerSecond: Double
        public var processedPerSecond: Double

        public init(workers: Int, busy: Int, acceptedPerSecond: Double, processedPerSecond: Double) {
            self.workers = workers
            self.busy = busy
            self.acceptedPerSecond = acceptedPerSecond
            self.processedPerSecond = processedPerSecond
        }
    }

    public let configuration: Configuration
    public let processID: String
    public let kind: ProcessRecord.Kind
    public let startedAt: Int64
    let host: String
    let pid: Int
    let registry: any FleetRegistry
    let load: @Sendable () -> Load
    let logger: Logger
    private let seen = Mutex<[ProcessRecord]>([])

    /// `processID`: this process's id in the registry (a new one by default).
    public init(configuration: Configuration = Configuration(), processID: String = ProcessRecord.makeID(), kind: ProcessRecord.Kind,
                registry: any FleetRegistry, logger: Logger, load: @escaping @Sendable () -> Load) {
        self.configuration = configuration
        self.host = ProcessInfo.processInfo.hostName
        self.pid = Int(ProcessInfo.processInfo.processIdentifier)
        self.processID = processID
        self.kind = kind
        self.startedAt = WallClock.nowMillis()
        self.registry = registry
        self.load = load
        self.logger = logger
    }

    /// The fleet's pause switches (``QueuePause``), kept in this fleet's registry.
    public var pauses: QueuePause { QueuePause(registry: registry) }

    /// The record this process would write now.
    public func record() -> ProcessRecord {
        let load = load()
        return ProcessRecord(id: processID, kind: kind, host: host, pid: pid,
                             workers: load.workers, busy: load.busy, acceptedPerSecond: load.acceptedPerSecond,
                             processedPerSecond: load.processedPerSecond, startedAt: startedAt, heartbeatAt: WallClock.nowMillis())
    }

    /// The live processes of the fleet, as of their last heartbeats, but this one as of now.
    public func liveProcesses() async throws -> [ProcessRecord] {
        var processes = try await registry.processes(heartbeatSince: WallClock.nowMillis() - configuration.staleAfter.asMilliseconds)
        let now = record()
        if let index = processes.firstIndex(where: { $0.id == processID }) {
            processes[index] = now
        } else {
            processes.append(now)
        }
        return processes
    }

    /// The live processes as read at this process's last heartbeat (at most one heartbeat old;
    /// empty before the first): for figures read often, such as an order's ETA.
    public var lastSeenFleet: [ProcessRecord] { seen.withLock { $0 } }

    public func run() async throws {
        await beat()
        await cancelWhenGracefulShutdown {
            var beats = 0
            while !Task.isCancelled {
                do { try await Task.sleep(for: self.configuration.heartbeat) } catch { break }
                await self.beat()
                beats += 1
                if beats % 60 == 0 {
                    _ = try? await self.registry.prune(heartbeatBefore: WallClock.nowMillis() - self.configuration.forgetAfter.asMilliseconds)
                }
            }
        }
        do {
            try await registry.remove(processID: processID)
        } catch {
            logger.warning("could not leave the fleet registry; the record expires by itself", metadata: ["error": "\(error)"])
        }
    }

    private func beat() async {
        do {
            try await registry.heartbeat(record())
            let live = try await liveProcesses()
            seen.withLock { $0 = live }
        } catch is CancellationError {
            // Shutting down: the record is removed (or expires) next.
        } catch {
            logger.warning("fleet heartbeat failed", metadata: ["error": "\(error)"])
        }
    }
}
