import FlashServer
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// An embedded flashsale server for one lab run: a fresh database in the lab's work folder, the
/// API on a free loopback port, the worker pool, all in this process.
enum LabServer {
    /// Runs `body` with a started server's base URL and system; shuts it down afterwards.
    static func with<T: Sendable>(
        _ configuration: FlashConfiguration, logger: Logger,
        _ body: @escaping @Sendable (String, FlashSystem) async throws -> T
    ) async throws -> T {
        var config = configuration
        config.http.host = "127.0.0.1"
        config.http.port = 0
        let system = try await FlashSystem.open(config, logger: logger)
        let port = BoundPort()
        let app = system.application(logger: logger) { bound in port.set(bound) }
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let result = try await withThrowingTaskGroup(of: T?.self) { tasks in
            tasks.addTask {
                try await group.run()
                return nil
            }
            tasks.addTask {
                while port.value == nil { try await Task.sleep(for: .milliseconds(5)) }
                do {
                    let value = try await body("http://127.0.0.1:\(port.value!)", system)
                    await group.triggerGracefulShutdown()
                    return value
                } catch {
                    await group.triggerGracefulShutdown()
                    throw error
                }
            }
            var value: T?
            for try await result in tasks where result != nil { value = result }
            return value!
        }
        try await system.close()
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: config.backend.path + suffix) }
        return result
    }
}

/// The port a server bound, set once it listens.
final class BoundPort: Sendable {
    private let port = Mutex<Int?>(nil)
    func set(_ value: Int) { port.withLock { $0 = value } }
    var value: Int? { port.withLock { $0 } }
}
