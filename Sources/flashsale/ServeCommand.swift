import ArgumentParser
import FlashServer
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// `flashsale serve`: the order API over the backend, with a worker pool unless `--workers 0`.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the order API (and, unless --workers 0, a pool of payment workers) over the database.",
        discussion: """
            Every option falls back to its FLASHSALE_… environment variable (e.g. FLASHSALE_PORT), then to its default. \
            With --workers 0 this process is the API only: run `flashsale worker` processes on the same --data file (one host) \
            or the same --database (PostgreSQL: any number of hosts).
            """)

    @Option(help: "Address to listen on [FLASHSALE_HOST, default 127.0.0.1].") var host: String?
    @Option(parsing: .unconditional, help: "Port to listen on; 0 picks a free one [FLASHSALE_PORT, default 8080].") var port: String?
    @OptionGroup var backend: BackendOptions
    @OptionGroup var queue: QueueOptions
    @OptionGroup var workers: WorkerOptions
    @OptionGroup var payment: PaymentOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var connections: ConnectionOptions
    @OptionGroup var log: LogOptions

    func resolve() throws -> FlashConfiguration {
        var config = FlashConfiguration()
        config.http.host = Settings.string(host, env: "FLASHSALE_HOST", default: config.http.host)
        config.http.port = try Settings.int(port, env: "FLASHSALE_PORT", default: config.http.port, range: 0...65535)
        try backend.resolve(into: &config)
        try queue.resolve(into: &config)
        try workers.resolve(into: &config, minimumWorkers: 0)
        try payment.resolve(into: &config)
        try api.resolve(into: &config)
        try connections.resolve(into: &config)
        return config
    }

    func validate() throws {
        _ = try resolve()
    }

    func run() async throws {
        let config = try resolve()
        let logger = try log.bootstrap()
        try await ListenCheck.ensureFree(host: config.http.host, port: config.http.port)
        // The system runs in one service group: the database first (stopped last), then this
        // process, which opens its backend before the server starts.
        do {
            try await FlashSystem.run(config, role: .server, logger: logger, gracefulShutdownSignals: [.sigterm, .sigint]) { system in
                logger.info("flashsale starting", metadata: config.startupMetadata.merging([
                    "sync_lanes": "\(config.api.syncLanes)",
                    "admin_token": "\(system.configuration.api.adminTokenSource ?? "given")",
                ]) { $1 })
                if let source = system.configuration.api.adminTokenSource, source != "given" {
                    // Where an operator finds the secret the admin routes need (never the secret itself).
                    FileHandle.standardOutput.write(Data("flashsale admin token \(source): send it as 'Authorization: Bearer <token>'\n".utf8))
                }
                let app = system.application(logger: logger) { port in
                    // One line on stdout that scripts (and the tests) wait for.
                    FileHandle.standardOutput.write(Data("flashsale listening on http://\(config.http.host):\(port); dashboard http://\(config.http.host):\(port)/dashboard\n".utf8))
                }
                // The backend is in the app's service group: it closes its store after the
                // server and the workers have stopped.
                try await app.run()
            }
        } catch {
            throw ListenCheck.translate(error, host: config.http.host, port: config.http.port)
        }
    }
}
