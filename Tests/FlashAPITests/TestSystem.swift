import FlashAPI
import FlashCore
import FlashPayments
import FlashServer
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Synchronization
import Testing

/// A fresh embedded system on a temporary database, for one test.
enum TestSystem {
    /// The admin secret of every test system; ``TestClientProtocol/call(_:_:json:headers:authorized:)`` sends it.
    static let adminToken = "test-admin-secret"

    static func configuration(workers: Int = 0, latency: Duration = .milliseconds(5)) -> FlashConfiguration {
        var config = FlashConfiguration()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flashsale-api-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        config.backend.path = directory.appendingPathComponent("flashsale.db").path
        config.http.port = 0
        config.workers.count = workers
        config.payment.latency = .fixed(latency)
        config.workers.shutdownDeadline = .seconds(2)
        config.api.adminToken = adminToken
        return config
    }

    static var logger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        return logger
    }

    /// Runs `body` against the system served over real loopback HTTP.
    static func withLiveSystem(
        _ config: FlashConfiguration,
        _ body: @escaping @Sendable (FlashSystem, any TestClientProtocol) async throws -> Void
    ) async throws {
        let system = try await FlashSystem.open(config, logger: logger)
        let app = system.application(logger: logger)
        try await app.test(.ahc(.http)) { client in try await body(system, client) }
        try await system.close()
    }

    /// Runs `body` against the system's routes over real loopback HTTP, served with its services
    /// as `adjust` changes them (other lanes, another deadline, a gateway wrapper); `adjust`
    /// returns what the test needs of them. Closes the system afterwards.
    static func withServices<Adjusted: Sendable>(
        _ config: FlashConfiguration,
        adjust: (inout FlashServices) -> Adjusted,
        _ body: @escaping @Sendable (FlashSystem, Adjusted, any TestClientProtocol) async throws -> Void
    ) async throws {
        let system = try await FlashSystem.open(config, logger: logger)
        var services = system.services
        let adjusted = adjust(&services)
        let app = buildApplication(services, host: "127.0.0.1", port: 0, logger: logger)
        do {
            try await app.test(.ahc(.http)) { client in try await body(system, adjusted, client) }
        } catch {
            try? await system.close()
            throw error
        }
        try await system.close()
    }
}

extension TestClientProtocol {
    /// Sends a JSON body and returns status, headers and the parsed JSON reply; with the test
    /// systems' admin secret unless `headers` has an `Authorization` or `authorized` is false.
    @discardableResult
    func call(_ method: HTTPRequest.Method, _ uri: String, json: String? = nil, headers: HTTPFields = [:],
              authorized: Bool = true) async throws -> Reply {
        var headers = headers
        if authorized, headers[.authorization] == nil { headers[.authorization] = "Bearer \(TestSystem.adminToken)" }
        return try await execute(uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) }) { response in
            let text = String(buffer: response.body)
            return Reply(status: response.status, headers: response.headers, text: text,
                         json: try? JSONValue.parse(Array(text.utf8)))
        }
    }
}

struct Reply: Sendable {
    var status: HTTPResponse.Status
    var headers: HTTPFields
    var text: String
    var json: JSONValue?

    subscript(path: String...) -> JSONValue? { json?.at(path) }

    func string(_ path: String...) -> String? { json?.at(path)?.string }

    func int(_ path: String...) -> Int? { json?.at(path)?.int }

    /// The error code of a JSON error reply.
    var errorCode: String? { string("error", "code") }
}

let seedOrder = #"{"customer_id": 1234, "items": [{"product_id": "PROD-001", "quantity": 2, "price": 49.99}]}"#

/// Polls `condition` until it holds or `timeout` passes.
func eventuallyTrue(timeout: Duration = .seconds(20), _ condition: @Sendable () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// Polls `condition` until it holds; records an issue if it still does not after `timeout`.
func expectEventually(timeout: Duration = .seconds(20), sourceLocation: SourceLocation = #_sourceLocation,
                      _ condition: @Sendable () async throws -> Bool) async throws {
    if try await !eventuallyTrue(timeout: timeout, condition) {
        Issue.record("condition not met within \(timeout)", sourceLocation: sourceLocation)
    }
}

/// Counts replies by status code, from many tasks.
final class StatusTally: Sendable {
    private let counts = Mutex<[Int: Int]>([:])
    func add(_ status: Int) { counts.withLock { $0[status, default: 0] += 1 } }
    func count(_ status: Int) -> Int { counts.withLock { $0[status] ?? 0 } }
}
