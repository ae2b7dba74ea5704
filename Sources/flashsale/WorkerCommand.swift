import ArgumentParser
import FlashServer
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// `flashsale worker`: a pool of payment workers (and the reconciler) on the database the API
/// writes to; no order API. Run as many as the gateway allows; each registers in the fleet.
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run a pool of payment workers (and the reconciler) on the database an API process writes to.",
        discussion: """
            Every option falls back to its FLASHSALE_… environment variable, then to its default. Several worker \
            processes (and one or more `serve --workers 0`) may share one --data file on one host, or one --database \
            (PostgreSQL) from any number of hosts. With --port, \
            /health, /stats, /workers and /metrics are served on that port.
            """)

    @Option(help: "Address of the side port [FLASHSALE_HOST, default 127.0.0.1].") var host: String?
    @Option(parsing: .unconditional, help: "Serve /health, /stats, /workers and /metrics on this port; 0 picks a free one; none if unset [FLASHSALE_WORKER_PORT].") var port: String?
    @OptionGroup var backend: BackendOptions
    @OptionGroup var queue: QueueOptions
    @OptionGroup var workers: WorkerOptions
    @OptionGroup var payment: PaymentOptions
    @OptionGroup var connections: ConnectionOptions
    @OptionGroup var log: LogOptions

    func resolve() throws -> (FlashConfiguration, sidePort: Bool) {
        var config = FlashConfiguration()
        config.http.host = Settings.string(host, env: "FLASHSALE_HOST", default: config.http.host)
        let side = Settings.value(port, env: "FLASHSALE_WORKER_PORT")
        if side != nil { config.http.port = try Settings.int(port, env: "FLASHSALE_WORKER_PORT", default: 0, range: 0...65535) }
        try backend.resolve(into: &config)
        try queue.resolve(into: &config)
        try workers.resolve(into: &config, minimumWorkers: 1)
        try payment.resolve(into: &config)
        try connections.resolve(into: &config)
        return (config, side != nil)
    }

    func validate() throws {
        _ = try resolve()
    }

    func run() async throws {
        let (config, sidePort) = try resolve()
        let logger = try log.bootstrap()
        if sidePort { try await ListenCheck.ensureFree(host: config.http.host, port: config.http.port) }
        do {
            try await FlashSystem.run(config, role: .worker, logger: logger, gracefulShutdownSignals: [.sigterm, .sigint]) { system in
                logger.info("flashsale worker starting", metadata: config.startupMetadata.merging([
                    "process_id": "\(system.membership.processID)",
                ]) { $1 })
                let ready = "flashsale worker \(system.membership.processID) running \(config.workers.count) workers"
                if sidePort {
                    let app = system.application(logger: logger) { port in
                        FileHandle.standardOutput.write(Data("\(ready); listening on http://\(config.http.host):\(port)\n".utf8))
                    }
                    try await app.run()
                } else {
                    let group = ServiceGroup(configuration: .init(services: system.runningServices, logger: logger))
                    FileHandle.standardOutput.write(Data("\(ready)\n".utf8))
                    try await group.run()
                }
            }
        } catch {
            throw sidePort ? ListenCheck.translate(error, host: config.http.host, port: config.http.port) : error
        }
    }
}
