/// The body of `GET /stats`: one type for the server that writes it and every client that reads
/// it (the monitor, the lab, the tests). Field names are fixed; outside tools read them.
///
/// Orders, payments and the reconciler's settlements are stored counters: exact for the whole
/// fleet. Workers and rates add up the live processes' last heartbeats (`processes`).
public struct SystemStats: Sendable, Hashable, Codable {
    public struct Orders: Sendable, Hashable, Codable {
        public var total: Int
        public var pending: Int
        public var processing: Int
        public var completed: Int
        public var failed: Int

        public init(total: Int, pending: Int, processing: Int, completed: Int, failed: Int) {
            self.total = total
            self.pending = pending
            self.processing = processing
            self.completed = completed
            self.failed = failed
        }
    }

    public struct Queue: Sendable, Hashable, Codable {
        public var visible: Int
        public var inFlight: Int
        public var delayed: Int
        public var deadLetter: Int
        public var oldestAgeSeconds: Double
        /// Whether consuming is paused for the fleet (``QueuePause``); nil from a server that
        /// does not report it.
        public var paused: Bool?
        /// Seconds until the last lease of the messages in flight ends; nil when the queue
        /// cannot say (SQS). With no live worker, in-flight messages wait this long.
        public var leasesEndInSeconds: Double?

        public init(visible: Int, inFlight: Int, delayed: Int, deadLetter: Int, oldestAgeSeconds: Double, paused: Bool? = nil,
                    leasesEndInSeconds: Double? = nil) {
            self.leasesEndInSeconds = leasesEndInSeconds
            self.paused = paused
            self.visible = visible
            self.inFlight = inFlight
            self.delayed = delayed
            self.deadLetter = deadLetter
            self.oldestAgeSeconds = oldestAgeSeconds
        }

        enum CodingKeys: String, CodingKey {
            case visible, delayed, paused
            case inFlight = "in_flight"
            case deadLetter = "dead_letter"
            case oldestAgeSeconds = "oldest_age_seconds"
            case leasesEndInSeconds = "leases_end_in_seconds"
        }
    }

    /// The fleet's workers: the sum over live processes.
    public struct Workers: Sendable, Hashable, Codable {
        public var count: Int
        public var busy: Int
        /// Live processes running workers.
        public var processes: Int

        public init(count: Int, busy: Int, processes: Int) {
            self.count = count
            self.busy = busy
            self.processes = processes
        }
    }

    public struct Payments: Sendable, Hashable, Codable {
        public var charges: Int
        public var declines: Int
        public var duplicateChargesPrevented: Int
        public var voided: Int

        public init(charges: Int, declines: Int, duplicateChargesPrevented: Int, voided: Int) {
            self.charges = charges
            self.declines = declines
            self.duplicateChargesPrevented = duplicateChargesPrevented
            self.voided = voided
        }

        enum CodingKeys: String, CodingKey {
            case charges, declines, voided
            case duplicateChargesPrevented = "duplicate_charges_prevented"
        }
    }

    public struct Reconciler: Sendable, Hashable, Codable {
        /// Settled as completed (stored: the fleet's).
        public var completed: Int
        /// Settled as failed (stored: the fleet's).
        public var failed: Int
        /// Orphans this process's reconciler could not settle yet.
        public var unresolved: Int
        /// This process's sweeps.
        public var sweeps: Int

        public init(completed: Int, failed: Int, unresolved: Int, sweeps: Int) {
            self.completed = completed
            self.failed = failed
            self.unresolved = unresolved
            self.sweeps = sweeps
        }
    }

    /// The fleet's rates: the sum over live processes.
    public struct Rates: Sendable, Hashable, Codable {
        public var acceptedPerSecond: Double
        public var processedPerSecond: Double

        public init(acceptedPerSecond: Double, processedPerSecond: Double) {
            self.acceptedPerSecond = acceptedPerSecond
            self.processedPerSecond = processedPerSecond
        }

        enum CodingKeys: String, CodingKey {
            case acceptedPerSecond = "accepted_per_second"
            case processedPerSecond = "processed_per_second"
        }
    }

    /// This process's sync checkout lanes.
    public struct Sync: Sendable, Hashable, Codable {
        public var lanes: Int
        public var busy: Int
        public var waiting: Int

        public init(lanes: Int, busy: Int, waiting: Int) {
            self.lanes = lanes
            self.busy = busy
            self.waiting = waiting
        }
    }

    public var orders: Orders
    public var queue: Queue
    public var workers: Workers
    public var payments: Payments
    public var reconciler: Reconciler
    public var rates: Rates
    public var sync: Sync
    /// Every live process sharing the backend, this one included.
    public var processes: [ProcessRecord]
    /// The transactional outbox, when the payments queue is elsewhere (SQS); absent otherwise.
    public var outbox: Outbox?
    /// This process's admission control: its deadline and the requests it shed.
    public var admission: Admission?
    /// The parts that could not be read this time, by name (`orders`, `queue`, `payments`,
    /// `settlements`, `processes`, `outbox`): their figures above are the last ones read (zero if
    /// none was). Absent when every part was read.
    public var unavailable: [String: Unavailable]?

    /// A part of the figures that could not be read: why, and how old its figures are.
    public struct Unavailable: Sendable, Hashable, Codable {
        /// What failed (the dependency, and its error or time limit).
        public var reason: String
        /// Seconds since the figures shown were read; nil when they never were (zeros shown).
        public var staleSeconds: Double?

        public init(reason: String, staleSeconds: Double?) {
            self.reason = reason
            self.staleSeconds = staleSeconds
        }

        enum CodingKeys: String, CodingKey {
            case reason
            case staleSeconds = "stale_seconds"
        }
    }

    /// This process's admission control (``AdmissionControl``).
    public struct Admission: Sendable, Hashable, Codable {
        /// How long an order may wait for the store before it is refused (`--admission-deadline`).
        public var deadlineSeconds: Double
        /// Requests refused before anything of them was stored, by reason (`forecast`,
        /// `deadline`, `checkout_lanes`), since this process started.
        public var shed: [String: Int]
        /// The most placements that may wait for the store and still be answered within the deadline:
        /// 0 while it is stalled, nil before its groups were timed (``AdmissionLine/Status``).
        public var limit: Int?
        /// How long the store's recent groups took, smoothed.
        public var groupSeconds: Double?
        /// Whether the store has answered nothing for as long as the deadline while it had work.
        public var stalled: Bool
        /// The longest a placement waited for its transaction to begin, recently (queue time).
        public var longestWaitSeconds: Double

        public init(deadlineSeconds: Double, shed: [String: Int], limit: Int? = nil, groupSeconds: Double? = nil,
                    stalled: Bool = false, longestWaitSeconds: Double = 0) {
            self.deadlineSeconds = deadlineSeconds
            self.shed = shed
            self.limit = limit
            self.groupSeconds = groupSeconds
            self.stalled = stalled
            self.longestWaitSeconds = longestWaitSeconds
        }

        enum CodingKeys: String, CodingKey {
            case shed, limit, stalled
            case deadlineSeconds = "deadline_seconds"
            case groupSeconds = "group_seconds"
            case longestWaitSeconds = "longest_wait_seconds"
        }
    }

    /// Payment messages committed with their orders and not yet published to the payments queue
    /// (SQS/SNS): the relay's backlog and how far behind it is.
    public struct Outbox: Sendable, Hashable, Codable {
        /// Messages waiting to be published (the whole fleet's: the outbox is in the backend).
        public var pending: Int
        /// Age of the oldest of them: the relay's lag.
        public var lagSeconds: Double

        public init(pending: Int, lagSeconds: Double) {
            self.pending = pending
            self.lagSeconds = lagSeconds
        }

        enum CodingKeys: String, CodingKey {
            case pending
            case lagSeconds = "lag_seconds"
        }
    }

    public init(orders: Orders, queue: Queue, workers: Workers, payments: Payments, reconciler: Reconciler, rates: Rates,
                sync: Sync, processes: [ProcessRecord], outbox: Outbox? = nil, admission: Admission? = nil,
                unavailable: [String: Unavailable]? = nil) {
        self.admission = admission
        self.orders = orders
        self.queue = queue
        self.workers = workers
        self.payments = payments
        self.reconciler = reconciler
        self.rates = rates
        self.sync = sync
        self.processes = processes
        self.outbox = outbox
        self.unavailable = unavailable
    }
}

/// The body of `GET /workers`.
public struct FleetList: Sendable, Hashable, Codable {
    /// The live processes, oldest start first.
    public var processes: [ProcessRecord]
    /// Their workers, and how many were busy at their last heartbeats.
    public var workers: Int
    public var busy: Int

    public init(processes: [ProcessRecord], workers: Int, busy: Int) {
        self.processes = processes
        self.workers = workers
        self.busy = busy
    }
}
