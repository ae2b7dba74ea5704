import AsyncHTTPClient
import FlashCore
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// A real `flashsale serve` (or `flashsale worker`, with its side port) process on a free loopback port.
final class ServerProcess: @unchecked Sendable {
    let process = Process()
    let logPath: String
    private(set) var port = 0
    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// The binary under test: `$FLASHSALE_BIN`, else the debug build next to these sources.
    static var binary: String {
        if let path = ProcessInfo.processInfo.environment["FLASHSALE_BIN"], !path.isEmpty { return path }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/flashsale").path
    }

    static func temporaryDataPath() -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flashsale-e2e-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory.appendingPathComponent("flashsale.db").path
    }

    /// Starts `flashsale <command> --port 0 --data dataPath …arguments` and waits until it listens.
    convenience init(_ command: String = "serve", dataPath: String, arguments: [String], environment: [String: String] = [:]) async throws {
        try self.init(launching: command, dataPath: dataPath, arguments: arguments, environment: environment)
        try await waitUntilListening(within: .seconds(30))
    }

    /// The admin secret every test server gets (through the environment, unless the test gives
    /// its own); ``APIClient`` sends it.
    static let adminToken = "e2e-admin-secret"
    /// The payment gateway's secret every test process gets; an ``APIClient`` of a gateway sends it.
    static let gatewayToken = "e2e-gateway-secret"

    /// Starts `flashsale <command> --port 0 --data dataPath …arguments`; see ``waitUntilListening(within:)``.
    init(launching command: String, dataPath: String, arguments: [String], environment: [String: String] = [:]) throws {
        var environment = environment
        if environment["FLASHSALE_ADMIN_TOKEN"] == nil { environment["FLASHSALE_ADMIN_TOKEN"] = Self.adminToken }
        // The payment gateway's secret, shared by a test's gateway and the processes charging through it.
        if environment["FLASHSALE_GATEWAY_TOKEN"] == nil { environment["FLASHSALE_GATEWAY_TOKEN"] = Self.gatewayToken }
        logPath = dataPath + ".\(UUID().uuidString.prefix(8)).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = [command, "--port", "0", "--data", dataPath, "--log-level", "warning"] + arguments
        process.standardOutput = log
        process.standardError = log
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
        try process.run()
    }

    /// The process's log so far.
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits until the process says where it listens; stops it and throws if it exits or
    /// `limit` passes first.
    func waitUntilListening(within limit: Duration) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            if let range = text.range(of: "listening on http://127.0.0.1:") {
                let digits = text[range.upperBound...].prefix { $0.isNumber }
                if let port = Int(digits) {
                    self.port = port
                    return
                }
            }
            guard !process.hasEnded else { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        process.terminate()
        throw ServerError("server did not start: \((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")")
    }

    /// Runs `flashsale serve --port 0 --data <temporary> …arguments` to its end (a start that must
    /// fail): how it ended and what it wrote to standard error.
    static func runToExit(_ arguments: [String]) throws -> (reason: Process.TerminationReason, status: Int32, errors: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--port", "0", "--data", temporaryDataPath()] + arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        if !process.blockUntilEnded(within: .seconds(120)) {
            kill(process.processIdentifier, SIGKILL)
            _ = process.blockUntilEnded(within: .seconds(30))
        }
        let status = process.endStatus
        return (status > 128 ? .uncaughtSignal : .exit, status > 128 ? status - 128 : status, text)
    }

    /// Runs `flashsale …arguments` (a command that ends by itself: `bench`, `chaos`) to its end,
    /// or interrupts it after `limit` and records an issue; its exit status and what it wrote.
    static func runCommand(_ arguments: [String], within limit: Duration = .seconds(900), environment: [String: String] = [:],
                           sourceLocation: SourceLocation = #_sourceLocation) async throws -> (status: Int32, output: String, errors: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flashsale-command-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let out = directory.appendingPathComponent("out"), err = directory.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        try process.run()
        if await !process.waitForEnd(within: limit) {
            process.interrupt()
            Issue.record("flashsale \(arguments.first ?? "") did not finish within \(limit)", sourceLocation: sourceLocation)
            if await !process.waitForEnd(within: .seconds(30)) {
                kill(process.processIdentifier, SIGKILL)
                _ = await process.waitForEnd(within: .seconds(30))
            }
        }
        return (process.endStatus, try String(contentsOf: out, encoding: .utf8), try String(contentsOf: err, encoding: .utf8))
    }

    /// Its resident memory now (`VmRSS`), in bytes; nil once it ended.
    var residentBytes: Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8) else { return nil }
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
        return line?.split(separator: " ").dropFirst().first.flatMap { Int($0) }.map { $0 * 1024 }
    }

    /// kill -9: no shutdown code runs.
    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        _ = process.blockUntilEnded(within: .seconds(30))
    }

    /// SIGTERM, then waits for the exit; returns the exit status.
    func terminate(timeout: Duration = .seconds(30)) async throws -> Int32 {
        kill(process.processIdentifier, SIGTERM)
        if await !process.waitForEnd(within: timeout) {
            kill9()
            throw ServerError("server did not exit within \(timeout) of SIGTERM")
        }
        return process.endStatus
    }

    deinit {
        if !process.hasEnded { kill(process.processIdentifier, SIGKILL) }
    }
}

struct ServerError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A small JSON-over-HTTP client for the tests.
struct APIClient: Sendable {
    let http: HTTPClient
    let base: String
    /// The secret sent as `Authorization: Bearer …`: the admin token of an API, the gateway's
    /// token of a gateway.
    var token: String = ServerProcess.adminToken

    struct Reply: Sendable {
        var status: Int
        var json: JSONValue?
        var headers: HTTPHeaders

        func string(_ path: String...) -> String? { json?.at(path)?.string }

        func int(_ path: String...) -> Int? { json?.at(path)?.int }
    }

    /// Sends `json` to `path`; with the test servers' admin secret unless `headers` has an
    /// `Authorization` or `authorized` is false.
    func call(_ method: HTTPMethod, _ path: String, json: String? = nil, headers: [(String, String)] = [],
              timeout: TimeAmount = .seconds(30), authorized: Bool = true) async throws -> Reply {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if authorized, !headers.contains(where: { $0.0.lowercased() == "authorization" }) {
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
        }
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        }
        let response = try await http.execute(request, timeout: timeout)
        let body = try await response.body.collect(upTo: 1 << 20)
        return Reply(status: Int(response.status.code), json: try? JSONValue.parse(body.readableBytesView), headers: response.headers)
    }

    func stats() async throws -> Reply { try await call(.GET, "/stats") }
}

let seedOrder = #"{"customer_id": 1234, "items": [{"product_id": "PROD-001", "quantity": 2, "price": 49.99}]}"#

/// Polls `condition` until it holds; records an issue if it still does not after `timeout`.
func expectEventually(timeout: Duration = .seconds(60), sourceLocation: SourceLocation = #_sourceLocation,
                      _ condition: @Sendable () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? await condition()) == true { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    if try await !condition() { Issue.record("condition not met within \(timeout)", sourceLocation: sourceLocation) }
}
