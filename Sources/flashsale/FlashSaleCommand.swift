import ArgumentParser
import FlashCore

/// The `flashsale` command: the service, its tools and its benchmarks (started by main.swift).
struct FlashSaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flashsale",
        abstract: "A flash-sale order-processing engine: order API, inventory gate, durable queue, payment workers.",
        version: FlashVersion.current,
        subcommands: [ServeCommand.self, WorkerCommand.self, GatewayCommand.self, SetupAWSCommand.self, LoadCommand.self, MonitorCommand.self, PlanCommand.self, LabCommand.self, BenchCommand.self, ChaosCommand.self])
}
