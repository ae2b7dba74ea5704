import NIOCore

/// A Swift `TaskExecutor` that runs jobs on one NIO event loop.
///
/// A transaction is a chain of statements, each answered on its connection's event loop.
/// Without a preference the code between two statements resumes on Swift's global executor,
/// behind every request handler queued there, so each round trip of a busy API process pays
/// that queue (measured here: a placement group's BEGIN → lock → write → COMMIT took ~4 ms for
/// ~1 ms of database work). Run on the connection's own loop, the next statement leaves from
/// the thread that read the answer. See ``PostgresDatabase``'s `bounded`.
///
/// Hand-written: swift-nio 2.101 makes an `EventLoop` a `SerialExecutor` (for actors) but not
/// a `TaskExecutor` (for `withTaskExecutorPreference`), and no listed package provides one.
final class EventLoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) {
        self.loop = loop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// One ``EventLoopTaskExecutor`` per loop of a group, made once.
struct LoopExecutors: Sendable {
    private let executors: [ObjectIdentifier: EventLoopTaskExecutor]

    init(_ group: any EventLoopGroup) {
        var executors: [ObjectIdentifier: EventLoopTaskExecutor] = [:]
        for loop in group.makeIterator() { executors[ObjectIdentifier(loop)] = EventLoopTaskExecutor(loop) }
        self.executors = executors
    }

    /// The executor of `loop` (made now if `loop` is not of the group).
    func executor(for loop: any EventLoop) -> EventLoopTaskExecutor {
        executors[ObjectIdentifier(loop)] ?? EventLoopTaskExecutor(loop)
    }
}
