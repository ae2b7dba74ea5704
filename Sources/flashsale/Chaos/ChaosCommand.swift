import ArgumentParser
import AsyncHTTPClient
import FlashCore
import Foundation

/// `flashsale chaos`: runs a real deployment on loopback, drives it with careful clients, breaks
/// it at random moments, and checks from outside that the promise held: nothing acknowledged
/// lost, nothing told "not acknowledged" stored, final states true to the gateway's ledger, no
/// unit oversold, nobody charged twice, nothing stuck.
struct ChaosCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chaos",
        abstract: "Break a running deployment (kill -9, SIGSTOP) under load and check the promise from outside.")

    @Option(help: "embedded, fleet, postgres (needs --database), sqs (needs --aws-endpoint) or all [default all: postgres only with --database, sqs only with --aws-endpoint].")
    var topology = "all"
    @Option(help: "Faults per topology.") var faults = 100
    @Option(help: "Mean time between faults (each is 0.5 to 1.5 times it).") var interval = "1s"
    @Option(help: "Concurrent clients.") var clients = 6
    @Option(help: "PostgreSQL URL for the postgres topology (a schema of its own per run).") var database: String?
    @Option(help: "The PostgreSQL cluster's directory (as scripts/postgres-server makes it: DIR/data, DIR/bin), to add its restart and SIGSTOP to the postgres topology's faults.")
    var postgresDir: String?
    @Option(help: "A local AWS endpoint (moto) for the sqs topology: `setup-aws` makes the run's topic and queues there. Its outages are the network's (cut, stalled): a local endpoint killed loses its queues, which real SQS does not.")
    var awsEndpoint: String?
    @Option(help: "Longest wait for every order to settle after the last fault.") var settle = "180s"
    @Option(help: "The clients hold off while more orders than this are open [default: 300 on sqs, where moto spends time in proportion to the queue's length on every message it sends or receives; no bound elsewhere].")
    var maxOpen: Int?
    @Option(help: "Directory for the history (JSON lines) and the processes' logs [default: a new one under the temporary directory].")
    var output: String?
    @Flag(help: "Print the summaries as one JSON array.") var json = false

    func validate() throws {
        guard faults >= 0, clients > 0 else { throw ValidationError("--faults must be 0 or more and --clients 1 or more") }
        if let maxOpen, maxOpen < 1 { throw ValidationError("--max-open must be 1 or more") }
        guard let interval = Duration(parsing: interval), interval >= .milliseconds(100) else {
            throw ValidationError("--interval must be a duration of 100ms or more, not '\(interval)'")
        }
        guard Duration(parsing: settle) != nil else { throw ValidationError("--settle must be a duration, not '\(settle)'") }
        if topology == "postgres", database == nil { throw ValidationError("--topology postgres needs --database") }
        if topology == "sqs", awsEndpoint == nil { throw ValidationError("--topology sqs needs --aws-endpoint") }
        guard topology == "all" || ChaosDeployment.Topology(rawValue: topology) != nil else {
            throw ValidationError("--topology must be embedded, fleet, postgres, sqs or all, not '\(topology)'")
        }
    }

    func run() async throws {
        let topologies: [ChaosDeployment.Topology] = if let one = ChaosDeployment.Topology(rawValue: topology) {
            [one]
        } else {
            ChaosDeployment.Topology.allCases.filter { ($0 != .postgres || database != nil) && ($0 != .sqs || awsEndpoint != nil) }
        }
        let root = output.map { URL(fileURLWithPath: $0, isDirectory: true) }
            ?? URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("flashsale-chaos-\(UUID().uuidString.prefix(8))", isDirectory: true)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let signals = ChildProcess.stopAllOnSignals {}
        defer { signals.forEach { $0.cancel() } }
        let http = HTTPClient(eventLoopGroupProvider: .singleton,
                              configuration: .init(timeout: .init(connect: .seconds(2), read: .seconds(20))))
        var summaries: [ChaosSummary] = []
        do {
            for topology in topologies {
                summaries.append(try await run(topology, in: root.appendingPathComponent(topology.rawValue, isDirectory: true), http: ChaosHTTP(http: http)))
            }
        } catch {
            try? await http.shutdown()
            // What the topologies before the failure found still counts.
            if !summaries.isEmpty, !json {
                for summary in summaries { print(summary.table) }
                print("history and logs: \(root.path)")
            }
            throw error
        }
        try await http.shutdown()
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(summaries), as: UTF8.self))
        } else {
            for summary in summaries { print(summary.table) }
            print("history and logs: \(root.path)")
        }
        if summaries.contains(where: { $0.violations > 0 }) {
            throw ExitCode(1)
        }
    }

    private func run(_ topology: ChaosDeployment.Topology, in directory: URL, http: ChaosHTTP) async throws -> ChaosSummary {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var url = database
        if topology == .postgres, let base = database {
            url = base + (base.contains("?") ? "&" : "?") + "schema=chaos_\(UUID().uuidString.prefix(8).lowercased())"
        }
        progress("\(topology.rawValue): starting")
        let deployment = try await ChaosDeployment(topology: topology, directory: directory, database: topology == .postgres ? url : nil,
                                                   postgresDirectory: postgresDir.map { URL(fileURLWithPath: $0, isDirectory: true) },
                                                   aws: topology == .sqs ? awsEndpoint : nil)
        let history = try ChaosHistory(path: directory.appendingPathComponent("history.jsonl").path)
        defer { history.close() }
        // The links forward for as long as the run lasts.
        return try await withThrowingTaskGroup(of: ChaosSummary?.self) { group in
            group.addTask {
                try await deployment.runLinks()
                return nil
            }
            defer { group.cancelAll() }
            return try await drive(deployment, topology: topology, history: history, http: http)
        }
    }

    private func drive(_ deployment: ChaosDeployment, topology: ChaosDeployment.Topology, history: ChaosHistory,
                       http: ChaosHTTP) async throws -> ChaosSummary {
        do {
            try await deployment.waitUntilAnswering(http, within: .seconds(60))
            let run = ChaosRun(deployment: deployment, http: http, history: history, clients: clients, faults: faults,
                               interval: Duration(parsing: interval)!, runID: "\(topology.rawValue)-\(UUID().uuidString.prefix(6))",
                               maxOpen: maxOpen ?? (topology == .sqs ? 300 : nil))
            try await run.stock()
            progress("\(topology.rawValue): \(faults) faults under load")
            let (intents, injected) = try await run.drive()
            var summary = ChaosSummary(topology: topology.rawValue, faults: injected)
            summary.attempts = intents.count
            summary.crashed = try deployment.restartExited()
            try await deployment.waitUntilAnswering(http, within: .seconds(60))
            progress("\(topology.rawValue): settling \(intents.count) orders")
            let check = ChaosCheck(deployment: deployment, http: http)
            _ = await check.settle(within: Duration(parsing: settle)!)
            try await check.check(intents, into: &summary)
            history.record(.init(event: "summary", error: summary.violations == 0 ? nil : "\(summary.examples)"))
            await deployment.stopAll()
            return summary
        } catch {
            await deployment.stopAll()
            throw error
        }
    }

    private func progress(_ text: String) {
        if !json { FileHandle.standardError.write(Data("chaos: \(text)\n".utf8)) }
    }
}
