import Foundation

/// The end of a child program, as the kernel tells it.
///
/// Foundation's `Process` on Linux has been seen to miss a child's exit and report it running
/// for ever: a test waited 11 minutes on a `flashsale chaos` that had printed its summary and
/// exited (a zombie nobody reaped), and `waitUntilExit()` never returned. So waits here poll,
/// are bounded, and ask the kernel (`waitid` with `WNOWAIT`: the child's end and status without
/// reaping it, so Foundation's own reaping is left undisturbed) when Foundation has not noticed.
extension Process {
    /// Whether the program has ended: Foundation saw it, or the kernel has it ended.
    public var hasEnded: Bool {
        guard isRunning else { return true }
        return kernelEnd() != nil
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
    /// not ended, or its status is lost.
    public var endStatus: Int32 {
        if !isRunning { return foundationStatus }
        guard let end = kernelEnd() else { return -1 }
        if let status = end { return status }
        // Foundation reaped it and is about to say so.
        let deadline = ContinuousClock.now + .seconds(2)
        while isRunning, ContinuousClock.now < deadline { usleep(5_000) }
        return isRunning ? -1 : foundationStatus
    }

    private var foundationStatus: Int32 {
        terminationReason == .uncaughtSignal ? 128 + terminationStatus : terminationStatus
    }

    /// nil while the kernel has the child running; once it has ended, its status (nil when
    /// Foundation has reaped it already, and so holds the status).
    private func kernelEnd() -> Int32?? {
        let pid = processIdentifier
        var info = siginfo_t()
        guard waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 else {
            // No such child any more: reaped (by Foundation) a moment ago.
            return .some(nil)
        }
        #if os(Linux)
        let (who, status) = (info._sifields._sigchld.si_pid, info._sifields._sigchld.si_status)
        #else
        let (who, status) = (info.si_pid, info.si_status)
        #endif
        guard who == pid else { return nil }
        return .some(Int32(info.si_code) == Int32(CLD_EXITED) ? status : 128 + status)
    }
}
