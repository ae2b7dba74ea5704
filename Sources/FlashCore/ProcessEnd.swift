import Foundation
import Synchronization

/// The end of a child program, as the kernel tells it.
///
/// Foundation's `Process` on Linux has been seen to miss a child's exit and report it running
/// for ever: a test waited 11 minutes on a `flashsale chaos` that had printed its summary and
/// exited (a zombie nobody reaped), and `waitUntilExit()` never returned. So waits here poll,
/// are bounded, and believe the kernel (`/proc/PID/stat` says the child is a zombie) when
/// Foundation has not noticed.
extension Process {
    /// Whether the program has ended: Foundation saw it, or the kernel has it as a zombie.
    public var hasEnded: Bool {
        guard isRunning else { return true }
        guard let stat = try? String(contentsOfFile: "/proc/\(processIdentifier)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        // The state is the first field after the command's closing parenthesis.
        return stat[close...].dropFirst().first { $0 != " " } == "Z"
    }

    /// Waits until the program has ended, or `limit` has passed; whether it ended.
    public func waitForEnd(within limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while !hasEnded {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    /// ``waitForEnd(within:)`` for callers that cannot suspend.
    public func blockUntilEnded(within limit: Duration) -> Bool {
        let deadline = ContinuousClock.now + limit
        while !hasEnded {
            guard ContinuousClock.now < deadline else { return false }
            usleep(20_000)
        }
        return true
    }

    /// The exit status of an ended program (128 + the signal when one ended it); -1 when it has
    /// not ended or its status is lost. Foundation's when it saw the end, otherwise reaped here.
    public var endStatus: Int32 {
        // Foundation first: it usually notices within moments of the kernel.
        let deadline = ContinuousClock.now + .seconds(1)
        while isRunning, hasEnded, ContinuousClock.now < deadline { usleep(10_000) }
        if !isRunning { return terminationReason == .uncaughtSignal ? 128 + terminationStatus : terminationStatus }
        let pid = processIdentifier
        if let status = ProcessEnds.reaped(pid) { return status }
        var raw: Int32 = 0
        guard waitpid(pid, &raw, WNOHANG) == pid else {
            // Foundation reaped it meanwhile: its status is Foundation's.
            return isRunning ? -1 : (terminationReason == .uncaughtSignal ? 128 + terminationStatus : terminationStatus)
        }
        // Exited normally: the low 7 bits are 0 and the exit code is the next byte; else a signal.
        let status = raw & 0x7F == 0 ? (raw >> 8) & 0xFF : 128 + (raw & 0x7F)
        ProcessEnds.record(pid, status)
        return status
    }
}

/// The statuses of children reaped here (Foundation had missed their end), by pid.
enum ProcessEnds {
    private static let statuses = Mutex<[Int32: Int32]>([:])
    static func reaped(_ pid: Int32) -> Int32? { statuses.withLock { $0[pid] } }
    static func record(_ pid: Int32, _ status: Int32) { statuses.withLock { $0[pid] = status } }
}
