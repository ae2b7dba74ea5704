import AsyncHTTPClient
import FlashCore
import Foundation
import NIOCore

/// A `flashsale serve` of this same build, started by `flashsale bench` on a free loopback port
/// (API only, `--workers 0`: the figures are the accept path's, not the workers').
struct BenchFlashServer: Sendable {
    let process: ChildProcess
    let base: String
    /// The admin secret of the bench's servers (given through the environment, out of `ps`).
    static let adminToken = TimeOrderedID.make() + TimeOrderedID.make()

    /// Starts it with `arguments` added (`--data FILE` or `--database URL`) and waits for `/health`.
    static func start(_ label: String, arguments: [String], scratch: URL, http: HTTPClient) async throws -> BenchFlashServer {
        let port = try await ChildProcess.freePort()
        // The bench's servers take their settings from these arguments only, never from the
        // caller's FLASHSALE_… variables; their admin secret is the bench's own.
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FLASHSALE_") }
        environment["FLASHSALE_ADMIN_TOKEN"] = adminToken
        let process = try ChildProcess(label, executable: ChildProcess.selfExecutable,
                                       arguments: ["serve", "--host", "127.0.0.1", "--port", "\(port)", "--workers", "0", "--log-level", "error"] + arguments,
                                       output: scratch.appendingPathComponent("\(label).log"), environment: environment)
        let server = BenchFlashServer(process: process, base: "http://127.0.0.1:\(port)")
        try await waitUntilAnswering(HTTPClientRequest(url: server.base + "/health"), process: process, http: http)
        return server
    }

    /// Polls with `request` until it answers `status`; throws with the program's log when the
    /// program exits, or (stopping it) when `within` passes or the task is cancelled.
    static func waitUntilAnswering(_ request: HTTPClientRequest, status: UInt = 200, process: ChildProcess, http: HTTPClient,
                                   within: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + within
        while ContinuousClock.now < deadline {
            guard process.isRunning else { throw BenchError("\(process.name) exited at start:\n\(process.log)") }
            if let response = try? await http.execute(request, timeout: .seconds(2)), response.status.code == status { return }
            do { try await Task.sleep(for: .milliseconds(50)) } catch {
                await process.stop()
                throw error
            }
        }
        await process.stop()
        throw BenchError("\(process.name) did not answer \(request.url) within \(within):\n\(process.log)")
    }
}

/// nginx answering every request with a fixed 202 and the accept's own body: the ceiling of
/// what an HTTP server does per request on this machine, with the same body and connections.
struct NginxCeiling: Sendable {
    let process: ChildProcess
    let base: String

    static func start(_ nginx: String, body: String, contentType: String, scratch: URL, http: HTTPClient) async throws -> NginxCeiling {
        let port = try await ChildProcess.freePort()
        let prefix = scratch.appendingPathComponent("nginx", isDirectory: true)
        try FileManager.default.createDirectory(at: prefix, withIntermediateDirectories: true)
        let escaped = body.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'")
        let configuration = """
            worker_processes auto;
            daemon off;
            pid \(prefix.path)/nginx.pid;
            error_log \(prefix.path)/error.log error;
            events { worker_connections 4096; }
            http {
                access_log off;
                client_body_temp_path \(prefix.path)/body;
                proxy_temp_path \(prefix.path)/proxy;
                fastcgi_temp_path \(prefix.path)/fastcgi;
                uwsgi_temp_path \(prefix.path)/uwsgi;
                scgi_temp_path \(prefix.path)/scgi;
                keepalive_requests 1000000;
                server {
                    listen 127.0.0.1:\(port);
                    location / {
                        default_type "\(contentType)";
                        return 202 '\(escaped)';
                    }
                }
            }
            """
        let file = prefix.appendingPathComponent("nginx.conf")
        try configuration.write(to: file, atomically: true, encoding: .utf8)
        let process = try ChildProcess("nginx", executable: nginx, arguments: ["-e", "\(prefix.path)/error.log", "-p", prefix.path, "-c", file.path],
                                       output: prefix.appendingPathComponent("stdout.log"))
        let ceiling = NginxCeiling(process: process, base: "http://127.0.0.1:\(port)")
        var request = HTTPClientRequest(url: ceiling.base + "/orders/async")
        request.method = .POST
        request.body = .bytes(ByteBuffer(string: "{}"))
        try await BenchFlashServer.waitUntilAnswering(request, status: 202, process: process, http: http, within: .seconds(10))
        return ceiling
    }
}
