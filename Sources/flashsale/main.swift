import ArgumentParser
import Dispatch
import Foundation

// The entry point is synchronous on purpose: an `async` main ends in `dispatch_main()`, which
// valgrind (3.19, Debian 12's) cannot run: it crashes before the first instruction of ours, so
// the accept path could not be profiled with callgrind. Nothing in flashsale runs on the main
// actor, so the main thread only waits here while the command runs on the global executor.
// (Anything added later that must run on the main actor, such as GRDB's ValueObservation with
// its default scheduler, would never run: give it another scheduler or executor.)
let finished = DispatchSemaphore(value: 0)
Task.detached {
    await runCommand()
    finished.signal()
}
finished.wait()

/// Parses and runs the command as `AsyncParsableCommand.main()` does, but an error of the
/// user's input found while the subcommand runs (a value that parsed but means nothing, a
/// port in use) is shown with that subcommand's usage (`flashsale serve …`), not the root's.
func runCommand() async {
    let command: any ParsableCommand
    do {
        command = try FlashSaleCommand.parseAsRoot()
    } catch {
        FlashSaleCommand.exit(withError: error)
    }
    do {
        if var async = command as? any AsyncParsableCommand {
            try await async.run()
        } else {
            var sync = command
            try sync.run()
        }
    } catch let error as ValidationError {
        let usage = FlashSaleCommand.usageString(for: type(of: command))
        let name = usage.split(separator: " ").prefix { !$0.hasPrefix("<") && !$0.hasPrefix("[") && !$0.hasPrefix("-") }.joined(separator: " ")
        FileHandle.standardError.write(Data("Error: \(error.message)\nUsage: \(usage)\n  See '\(name) --help' for more information.\n".utf8))
        Foundation.exit(ExitCode.validationFailure.rawValue)
    } catch let error as StartupError {
        FileHandle.standardError.write(Data("Error: \(error.description)\n".utf8))
        Foundation.exit(ExitCode.failure.rawValue)
    } catch {
        FlashSaleCommand.exit(withError: error)
    }
}
