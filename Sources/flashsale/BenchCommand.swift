import ArgumentParser

/// `flashsale bench …`: the benchmarks behind the figures in the README.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Run a benchmark and print its figures.",
        subcommands: [QueueBenchCommand.self, WorkersBenchCommand.self, FlashSaleBenchCommand.self, JSONBenchCommand.self])
}
