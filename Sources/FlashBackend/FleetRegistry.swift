import Foundation

/// One process of the fleet as it last reported itself (Sidekiq's process list): what it is,
/// where it runs, and its figures at its last heartbeat.
public struct ProcessRecord: Sendable, Hashable, Codable {
    /// What a process runs.
    public enum Kind: String, Sendable, Hashable, Codable {
        /// `flashsale serve` with workers: the API and a worker pool.
        case server
        /// `flashsale serve --workers 0`: the API only.
        case api
        /// `flashsale worker`: a worker pool only.
        case worker
    }

    /// Unique per process start: `host:pid:random`.
    public var id: String
    public var kind: Kind
    public var host: String
    public var pid: Int
    /// Workers in its pool (0 for an API process).
    public var workers: Int
    /// Workers charging at its last heartbeat.
    public var busy: Int
    /// Orders it accepted per second (API), at its last heartbeat.
    public var acceptedPerSecond: Double
    /// Orders it finished per second (workers, sync checkouts, settlements), at its last heartbeat.
    public var processedPerSecond: Double
    /// When it started (Unix ms).
    public var startedAt: Int64
    /// Its last heartbeat (Unix ms).
    public var heartbeatAt: Int64

    public init(id: String, kind: Kind, host: String, pid: Int, workers: Int, busy: Int, acceptedPerSecond: Double,
                processedPerSecond: Double, startedAt: Int64, heartbeatAt: Int64) {
        self.id = id
        self.kind = kind
        self.host = host
        self.pid = pid
        self.workers = workers
        self.busy = busy
        self.acceptedPerSecond = acceptedPerSecond
        self.processedPerSecond = processedPerSecond
        self.startedAt = startedAt
        self.heartbeatAt = heartbeatAt
    }

    enum CodingKeys: String, CodingKey {
        case id, kind, host, pid, workers, busy
        case acceptedPerSecond = "accepted_per_second"
        case processedPerSecond = "processed_per_second"
        case startedAt = "started_at"
        case heartbeatAt = "heartbeat_at"
    }

    /// A new id for this process: host, pid and a random suffix (pids are reused).
    public static func makeID() -> String {
        "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier):\(UInt32.random(in: 0...UInt32.max))"
    }
}

/// Where the processes of a fleet register, so that any of them can show every live one.
///
/// A process writes its record at every heartbeat; a process whose last heartbeat is older than
/// the staleness limit is dead (kill -9 leaves no goodbye) and is no longer listed; its row is
/// deleted later by ``prune(heartbeatBefore:)``.
public protocol FleetRegistry: Sendable {
    /// Inserts or replaces the process's record.
    func heartbeat(_ record: ProcessRecord) async throws

    /// Removes a process (at its graceful shutdown).
    func remove(processID: String) async throws

    /// The processes whose last heartbeat is at or after `since` (Unix ms), oldest start first.
    func processes(heartbeatSince since: Int64) async throws -> [ProcessRecord]

    /// Deletes the records of processes whose last heartbeat was before `millis`; returns how many.
    @discardableResult
    func prune(heartbeatBefore millis: Int64) async throws -> Int

    /// A value every process of the fleet reads, by name (the latest purge of an external
    /// payments queue); nil when none is set.
    func value(named name: String) async throws -> String?

    /// Sets the value every process of the fleet reads under `name`.
    func setValue(_ value: String, named name: String) async throws

    /// Sets the value under `name` to `new` only if it is `expected` now; whether it did.
    func replaceValue(named name: String, from expected: String, to new: String) async throws -> Bool
}
