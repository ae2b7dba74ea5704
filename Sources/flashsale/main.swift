import Dispatch

// The entry point is synchronous on purpose: an `async` main ends in `dispatch_main()`, which
// valgrind (3.19, Debian 12's) cannot run: it crashes before the first instruction of ours, so
// the accept path could not be profiled with callgrind. Nothing in flashsale runs on the main
// actor, so the main thread only waits here while the command runs on the global executor.
let finished = DispatchSemaphore(value: 0)
Task.detached {
    await FlashSaleCommand.main()
    finished.signal()
}
finished.wait()
