import ArgumentParser
import FlashCore
import FlashGateway
import FlashPayments
import FlashServer
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// `flashsale gateway`: the simulated payment provider as its own HTTP service.
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run the payment gateway as its own service (POST /charges, GET /charges/{order_id}, GET /stats).",
        discussion: """
            Point `serve` and `worker` at it with --payment-url http://HOST:PORT. Charges are idempotent by order id: \
            however many workers in however many processes ask, an order is charged once. With --data the ledger \
            is a file and outlives a restart (kill -9 included); without it, it lives in memory.
            """)

    @Option(help: "Address to listen on [FLASHSALE_GATEWAY_HOST, default 127.0.0.1].") var host: String?
    @Option(parsing: .unconditional, help: "Port to listen on; 0 picks a free one [FLASHSALE_GATEWAY_PORT, default 9090].") var port: String?
    @Option(parsing: .unconditional, help: "Time per charge: 3s, 30ms, 20ms..40ms (uniform) or exp:3s [FLASHSALE_GATEWAY_LATENCY, default 3s].") var latency: String?
    @Option(parsing: .unconditional, help: "Charges in progress at once; more wait for a slot; 0 is no limit [FLASHSALE_GATEWAY_SLOTS, default 0].") var slots: String?
    @Option(parsing: .unconditional, help: "Fraction of charges declined, 0...1 [FLASHSALE_GATEWAY_DECLINE_RATE, default 0].") var declineRate: String?
    @Option(help: "Ledger file (SQLite); in memory when unset [FLASHSALE_GATEWAY_DATA].") var data: String?
    @Option(help: "A file holding the secret callers must send (first line; owner-only) [FLASHSALE_GATEWAY_TOKEN_FILE; or the secret itself in FLASHSALE_GATEWAY_TOKEN; default: flashsale.gateway-token beside --data (or here), generated when missing].") var tokenFile: String?
    @OptionGroup var connections: ConnectionOptions
    @OptionGroup var log: LogOptions

    /// The gateway's secret file when none is named: beside the ledger's file (or the file a
    /// `--payment-url` process looks for beside its own database).
    static func defaultTokenFile(beside path: String) -> String {
        SharedSecret.file("flashsale.gateway-token", beside: path)
    }

    func run() async throws {
        let host = Settings.string(self.host, env: "FLASHSALE_GATEWAY_HOST", default: "127.0.0.1")
        let port = try Settings.int(self.port, env: "FLASHSALE_GATEWAY_PORT", default: 9090, range: 0...65535)
        var simulator = SimulatedPaymentGateway.Configuration(latency: .fixed(.seconds(3)))
        if let text = Settings.value(latency, env: "FLASHSALE_GATEWAY_LATENCY") {
            guard let model = LatencyModel(parsing: text), model.longest <= longestSetting else {
                throw ValidationError("--latency must be like 3s, 30ms, 20ms..40ms or exp:3s (at most 1 day), not '\(text)'")
            }
            simulator.latency = model
        }
        let slotCount = try Settings.int(slots, env: "FLASHSALE_GATEWAY_SLOTS", default: 0, range: 0...1_000_000)
        simulator.concurrencyLimit = slotCount == 0 ? nil : slotCount
        simulator.declineRate = try Settings.double(declineRate, env: "FLASHSALE_GATEWAY_DECLINE_RATE", default: 0, range: 0...1)
        let logger = try log.bootstrap()
        try await ListenCheck.ensureFree(host: host, port: port)

        // The gateway's own store: its ledger alone, in a file (closed at shutdown) or in memory.
        let path = Settings.value(data, env: "FLASHSALE_GATEWAY_DATA")
        if let path { try BackendOptions.checkDataPath(path, flag: Settings.source(data, env: "FLASHSALE_GATEWAY_DATA")) }
        let store = try GatewayStore.open(path: path)
        let ledger = store.ledger
        let services = store.services
        let secret = try SharedSecret.resolve(
            "gateway token", token: ProcessInfo.processInfo.environment["FLASHSALE_GATEWAY_TOKEN"],
            file: Settings.value(tokenFile, env: "FLASHSALE_GATEWAY_TOKEN_FILE"),
            defaultFile: Self.defaultTokenFile(beside: Settings.value(data, env: "FLASHSALE_GATEWAY_DATA") ?? "./ledger"), generate: true,
            hint: "set FLASHSALE_GATEWAY_TOKEN or --token-file")!
        let server = GatewayServer(gateway: SimulatedPaymentGateway(configuration: simulator, ledger: ledger), ledger: ledger, token: secret.token)
        logger.info("flashsale gateway starting", metadata: [
            "latency": "\(simulator.latency)", "slots": "\(slotCount)", "ledger": "\(Settings.value(data, env: "FLASHSALE_GATEWAY_DATA") ?? "memory")",
            "token": "\(secret.source)",
        ])
        if secret.source != "given" {
            // Where the fleet's operator finds the secret (never the secret itself).
            FileHandle.standardOutput.write(Data("flashsale gateway token \(secret.source): give it to serve and worker as FLASHSALE_GATEWAY_TOKEN or --payment-token-file\n".utf8))
        }
        let app = try server.application(host: host, port: port, limits: try connections.resolve(), services: services, logger: logger) { port in
            FileHandle.standardOutput.write(Data("flashsale gateway listening on http://\(host):\(port)\n".utf8))
        }
        do {
            try await app.runService()
        } catch {
            throw ListenCheck.translate(error, host: host, port: port)
        }
    }
}
