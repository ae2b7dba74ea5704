import Dispatch

// The entry point is synchronous on purpose: an `async` main ends in `dispatch_main()`, which
// valgrind (3.19, Debian 12's) cannot run: it crashes before the first instruction of ours, so
// the accept path could not be profiled with callgrind. Nothing in flashsale runs on the main
// actor, so the main thread only waits here while the command runs on the global executor.
// (Anything added later that must run on the main actor, such as GRDB's ValueObservation with
// its default scheduler, would never run: give it another scheduler or executor.)
let finished = DispatchSemaphore(value: 0)
Task.detached {
    await FlashSaleCommand.main()
    finished.signal()
}
finished.wait()
