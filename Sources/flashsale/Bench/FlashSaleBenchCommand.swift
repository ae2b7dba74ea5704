import ArgumentParser
import AsyncHTTPClient
import FlashCore
import FlashServer
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// `flashsale bench flash-sale`: N buyers at once against S units, over real HTTP on loopback.
///
/// Starts the embedded server on a free port, resets the stock, fires every `POST /buy` at once,
/// then waits for the workers. Passes when exactly S orders were accepted, N − S refused, the
/// stock is 0 and every accepted order was processed and charged once.
struct FlashSaleBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flash-sale",
        abstract: "N concurrent buy attempts against S units: exactly S sold, never more.")

    @Option(help: "Buy attempts, all fired at once.") var attempts = 10_000
    @Option(help: "Units in stock.") var stock = 100
    @Option(help: "Client connections (the attempts share them).") var connections = 1000
    @Option(help: "Payment workers.") var workers = 20
    @Option(help: "Payment latency.") var paymentLatency = "30ms"

    func run() async throws {
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        var config = FlashConfiguration()
        config.backend.path = NSTemporaryDirectory() + "flashsale-bench-sale-\(UUID().uuidString).db"
        config.http.port = 0
        config.api.adminToken = TimeOrderedID.make() + TimeOrderedID.make()
        config.workers.count = workers
        guard let latency = Duration(parsing: paymentLatency) else { throw ValidationError("--payment-latency must be a duration, \(Duration.acceptedForms)") }
        config.payment.latency = .fixed(latency)
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: config.backend.path + suffix) } }
        let system = try await FlashSystem.open(config, logger: logger)
        let port = Mutex<Int?>(nil)
        let app = system.application(logger: logger) { bound in port.withLock { $0 = bound } }
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(
            timeout: .init(connect: .seconds(10), read: .seconds(60)),
            connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: connections)))
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            while port.withLock({ $0 }) == nil { try await Task.sleep(for: .milliseconds(10)) }
            let base = "http://127.0.0.1:\(port.withLock { $0! })"
            try await runSale(http: http, base: base, system: system)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        try await http.shutdown()
        try await system.close()
    }

    func runSale(http: HTTPClient, base: String, system: FlashSystem) async throws {
        var reset = HTTPClientRequest(url: "\(base)/reset-stock/\(stock)")
        reset.method = .POST
        reset.headers.add(name: "Authorization", value: "Bearer \(system.configuration.api.adminToken ?? "")")
        _ = try await http.execute(reset, timeout: .seconds(10))
        let clock = ContinuousClock()
        let started = clock.now
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for user in 0..<attempts {
                group.addTask {
                    var request = HTTPClientRequest(url: "\(base)/buy")
                    request.method = .POST
                    request.headers.add(name: "Content-Type", value: "application/json")
                    request.body = .bytes(ByteBuffer(string: #"{"userId": \#(user)}"#))
                    do {
                        let response = try await http.execute(request, timeout: .seconds(60))
                        _ = try await response.body.collect(upTo: 1 << 16)
                        return Int(response.status.code)
                    } catch {
                        return -1
                    }
                }
            }
            return try await group.reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }
        }
        let decided = clock.now - started
        let accepted = statuses[200] ?? 0, refused = statuses[400] ?? 0
        let left = try await system.catalog.product(id: system.configuration.api.flashProduct)?.stock ?? -1
        while try await system.store.counts().completed + system.store.counts().failed < accepted {
            try await Task.sleep(for: .milliseconds(20))
        }
        let counts = try await system.store.counts()
        let ledger = try await system.ledger.entries()
        print("flash sale: \(attempts) buy attempts at once against \(stock) units (\(connections) connections)")
        print("  accepted (200):     \(accepted)")
        print("  refused (400):      \(refused)")
        print("  other:              \(statuses.filter { $0.key != 200 && $0.key != 400 }.map { "\($0.key == -1 ? "error" : String($0.key)): \($0.value)" }.joined(separator: ", "))")
        print("  stock left:         \(left)")
        print("  orders completed:   \(counts.completed)  (failed: \(counts.failed), total: \(counts.total))")
        print("  ledger entries:     \(ledger.count)")
        print(String(format: "  decisions:          %.0f/s over %.2f s (client and server on the same 2 cores)", Double(attempts) / decided.asSeconds, decided.asSeconds))
        let ok = accepted == stock && refused == attempts - stock && left == 0 && counts.completed == stock
            && counts.total == stock && ledger.count == stock
        print(ok ? "PASS: exactly \(stock) sold, none oversold, each processed and charged once" : "FAIL")
        if !ok { throw ExitCode.failure }
    }
}
