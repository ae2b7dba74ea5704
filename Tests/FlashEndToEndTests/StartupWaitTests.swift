import AsyncHTTPClient
import FlashCore
import FlashFaults
import Foundation
import Testing

/// A process started while its database is away (a worker restarted during a PostgreSQL
/// restart or stall, a fleet started before its database) waits for it and comes up with it,
/// rather than exiting and leaving its share of the work to nobody; a database that refuses it
/// (no such database) fails the start at once. The database is the test command's PostgreSQL,
/// reached through a ``TCPProxy`` that stalls or refuses.
@Suite("A database away at start-up", .enabled(if: TestPostgresServer.url != nil))
struct StartupWaitTests {
    /// The test PostgreSQL's URL with its host and port replaced by the proxy's, and a schema.
    static func url(port: Int? = nil, database: String? = nil, schema: String) throws -> String {
        var components = try realServer()
        if let port { components.port = port }
        if let database { components.path = "/" + database }
        components.queryItems = (components.queryItems ?? []) + [URLQueryItem(name: "schema", value: schema)]
        return try #require(components.string)
    }

    static func realServer() throws -> URLComponents {
        let url = try #require(TestPostgresServer.url)
        return try #require(URLComponents(string: url))
    }

    /// A proxy to the test PostgreSQL, running until the returned task is cancelled.
    static func proxy() async throws -> (TCPProxy, Task<Void, any Error>) {
        let real = try realServer()
        let host = try #require(real.host), port = try #require(real.port)
        let proxy = try await TCPProxy(forwardingTo: host, port: port)
        return (proxy, Task { try await proxy.run() })
    }

    @Test func aWorkerStartedWhileItsDatabaseIsAwayComesUpWithItAndCharges() async throws {
        let (proxy, serving) = try await Self.proxy()
        defer { serving.cancel() }
        let schema = "startup_\(UUID().uuidString.prefix(8).lowercased())"
        let data = ServerProcess.temporaryDataPath()
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            // Stalled first (connections open, no answer), then refused outright.
            proxy.mode = .stalled
            let worker = try ServerProcess(launching: "worker", dataPath: data, arguments: [
                "--database", try Self.url(port: proxy.port, schema: schema), "--workers", "2", "--payment-latency", "10ms",
            ])
            try await expectEventually(timeout: .seconds(60)) { worker.log.contains("cannot be reached yet") }
            proxy.mode = .refusing
            try await expectEventually(timeout: .seconds(60)) { worker.log.components(separatedBy: "cannot be reached yet").count > 3 }
            #expect(!worker.process.hasEnded, "the worker gave up while its database was away: \(worker.log)")
            // The database is back: the worker comes up by itself and charges what an API takes.
            proxy.mode = .passing
            try await worker.waitUntilListening(within: .seconds(60))
            let api = try await ServerProcess(dataPath: data, arguments: ["--workers", "0", "--database", try Self.url(schema: schema)])
            let client = APIClient(http: http, base: api.baseURL)
            let reply = try await client.call(.POST, "/orders/async", json: #"{"customer_id":"s1","items":[{"product_id":"P","quantity":1,"price":1}]}"#)
            #expect(reply.status == 202)
            let id = try #require(reply.string("order_id"))
            try await expectEventually(timeout: .seconds(60)) { try await client.call(.GET, "/orders/\(id)").string("status") == "completed" }
            #expect(try await worker.terminate() == 0)
            #expect(try await api.terminate() == 0)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    @Test func aDatabaseThatRefusesTheProcessOrNoWaitFailsTheStartAtOnce() async throws {
        let (proxy, serving) = try await Self.proxy()
        defer { serving.cancel() }
        let schema = "startup_\(UUID().uuidString.prefix(8).lowercased())"
        // No such database: the server answers, and no wait makes it exist.
        let missing = try ServerProcess(launching: "worker", dataPath: ServerProcess.temporaryDataPath(), arguments: [
            "--database", try Self.url(database: "no_such_database", schema: schema), "--startup-wait", "10m",
        ])
        try await expectEventually(timeout: .seconds(60)) { missing.process.hasEnded }
        try #require(missing.process.hasEnded, "\(missing.log)")
        #expect(missing.process.endStatus != 0)
        #expect(missing.log.contains("no_such_database"), "\(missing.log)")
        #expect(!missing.log.contains("cannot be reached yet"), "\(missing.log)")
        // Unreachable with --startup-wait 0s: the first failure is final.
        proxy.mode = .refusing
        let impatient = try ServerProcess(launching: "worker", dataPath: ServerProcess.temporaryDataPath(), arguments: [
            "--database", try Self.url(port: proxy.port, schema: schema), "--startup-wait", "0s",
        ])
        try await expectEventually(timeout: .seconds(60)) { impatient.process.hasEnded }
        try #require(impatient.process.hasEnded, "\(impatient.log)")
        #expect(impatient.process.endStatus != 0)
        #expect(impatient.log.contains("cannot open PostgreSQL"), "\(impatient.log)")
    }
}
