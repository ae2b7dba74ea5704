import ArgumentParser

/// `flashsale bench`: every figure beside its ceilings (``SuiteBenchCommand``); the subcommands
/// measure one part at a time, with more knobs.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the figures in BENCHMARKS.md: all of them beside their ceilings (the default), or one part.",
        subcommands: [SuiteBenchCommand.self, QueueBenchCommand.self, WorkersBenchCommand.self, FlashSaleBenchCommand.self, JSONBenchCommand.self, OverloadBenchCommand.self],
        defaultSubcommand: SuiteBenchCommand.self)
}
