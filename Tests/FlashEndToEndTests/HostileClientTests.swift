import AsyncHTTPClient
import Dispatch
import Foundation
import Testing

/// Slow and idle clients (issue 25): thousands of idle sockets, slowloris clients dripping
/// their headers or bodies, and more connections than the cap, beside normal traffic. `/health`
/// and new orders keep answering; idle and slow connections are closed after their timeouts;
/// connections past the cap are closed at once and counted.
@Suite("Slow, idle and too many clients")
struct HostileClientTests {
    /// A raw TCP connection to loopback (blocking calls, made off Swift's concurrency pool).
    final class RawConnection: @unchecked Sendable {
        let descriptor: Int32

        init?(port: Int) {
            descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard descriptor >= 0 else { return nil }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else {
                close(descriptor)
                return nil
            }
        }

        /// Sends `text`; false when the server has closed the connection.
        @discardableResult
        func send(_ text: String) -> Bool {
            let bytes = Array(text.utf8)
            return bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
        }

        /// Whether the server closed it (EOF or reset), without waiting.
        var closedByServer: Bool {
            var byte: UInt8 = 0
            let read = recv(descriptor, &byte, 1, Int32(MSG_DONTWAIT))
            if read == 0 { return true }
            if read < 0 { return errno != EAGAIN && errno != EWOULDBLOCK }
            return false
        }

        deinit { close(descriptor) }
    }

    /// Opens `count` connections on a thread of their own.
    static func open(_ count: Int, port: Int) async -> [RawConnection] {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: (0..<count).compactMap { _ in RawConnection(port: port) })
            }
        }
    }

    /// Waits, polling, until `condition` holds or `limit` passes; whether it held.
    static func within(_ limit: Duration, _ condition: () -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + limit
        while !condition() {
            guard ContinuousClock.now < deadline else { return false }
            try await Task.sleep(for: .milliseconds(100))
        }
        return true
    }

    @Test func idleSocketsAndSlowlorisClientsDoNotStopHealthOrOrdersAndAreClosedAfterTheirTimeouts() async throws {
        let server = try await ServerProcess(dataPath: ServerProcess.temporaryDataPath(), arguments: [
            "--workers", "0", "--idle-timeout", "3s", "--body-timeout", "3s", "--max-connections", "5000",
        ])
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let idle = await Self.open(2_000, port: server.port)
            #expect(idle.count == 2_000)
            // Slowloris: a request head that never ends, and a body that never arrives, both dripped.
            let heads = await Self.open(20, port: server.port)
            for connection in heads { connection.send("POST /orders/async HTTP/1.1\r\nHost: x\r\n") }
            let bodies = await Self.open(20, port: server.port)
            for connection in bodies {
                connection.send("POST /orders/async HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
            }
            let drip = Task.detached {
                while !Task.isCancelled {
                    for connection in heads { connection.send("X-Slow: 1\r\n") }
                    for connection in bodies { connection.send(" ") }
                    try await Task.sleep(for: .milliseconds(500))
                }
            }
            defer { drip.cancel() }
            // Normal traffic meanwhile: every request answered.
            let client = APIClient(http: http, base: server.baseURL)
            for index in 0..<40 {
                #expect(try await client.call(.GET, "/health", timeout: .seconds(10)).status == 200)
                let order = #"{"customer_id":"h\#(index)","items":[{"product_id":"P","quantity":1,"price":1}]}"#
                #expect(try await client.call(.POST, "/orders/async", json: order, timeout: .seconds(10)).status == 202)
                try await Task.sleep(for: .milliseconds(50))
            }
            // Each kind is closed after its timeout (3 s), the dripping ones although they keep sending.
            #expect(try await Self.within(.seconds(30)) { idle.allSatisfy(\.closedByServer) },
                    "idle connections still open: \(idle.filter { !$0.closedByServer }.count)")
            #expect(try await Self.within(.seconds(30)) { heads.allSatisfy(\.closedByServer) }, "a slow request head was never cut off")
            #expect(try await Self.within(.seconds(30)) { bodies.allSatisfy(\.closedByServer) }, "a slow body was never cut off")
            #expect(try await client.call(.GET, "/health").status == 200)
            let metrics = try await http.execute(HTTPClientRequest(url: server.baseURL + "/metrics"), timeout: .seconds(10))
            let text = String(buffer: try await metrics.body.collect(upTo: 1 << 22))
            #expect(text.contains(#"flashsale_http_connections_closed_total{reason="body_timeout"} 20"#), "\(text.split(separator: "\n").filter { $0.contains("connections") })")
            #expect(try await server.terminate() == 0)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    @Test func connectionsPastTheCapAreClosedAtOnceAndServiceResumesWhenIdleOnesTimeOut() async throws {
        let server = try await ServerProcess(dataPath: ServerProcess.temporaryDataPath(), arguments: [
            "--workers", "0", "--idle-timeout", "2s", "--max-connections", "50",
        ])
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let held = await Self.open(50, port: server.port)
            #expect(held.count == 50)
            // Let the server take them all, then one more: closed as soon as it is accepted.
            try await Task.sleep(for: .milliseconds(500))
            let extra = try #require(await Self.open(1, port: server.port).first)
            #expect(try await Self.within(.seconds(10)) { extra.closedByServer }, "a connection past the cap stayed open")
            // Once the idle ones time out, new clients are served.
            #expect(try await Self.within(.seconds(30)) { held.allSatisfy(\.closedByServer) })
            let client = APIClient(http: http, base: server.baseURL)
            #expect(try await client.call(.GET, "/health").status == 200)
            let metrics = try await http.execute(HTTPClientRequest(url: server.baseURL + "/metrics"), timeout: .seconds(10))
            let text = String(buffer: try await metrics.body.collect(upTo: 1 << 22))
            let refused = text.split(separator: "\n").first { $0.hasPrefix(#"flashsale_http_connections_closed_total{reason="max_connections"}"#) }
            #expect((refused?.split(separator: " ").last.flatMap { Int($0) } ?? 0) >= 1, "\(String(describing: refused))")
            #expect(try await server.terminate() == 0)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    @Test func theGatewayClosesIdleConnectionsAndThosePastItsCap() async throws {
        let gateway = try await ServerProcess("gateway", dataPath: ServerProcess.temporaryDataPath() + ".gateway", arguments: [
            "--latency", "5ms", "--idle-timeout", "2s", "--max-connections", "30",
        ])
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let held = await Self.open(30, port: gateway.port)
            #expect(held.count == 30)
            try await Task.sleep(for: .milliseconds(500))
            let extra = try #require(await Self.open(1, port: gateway.port).first)
            #expect(try await Self.within(.seconds(10)) { extra.closedByServer }, "a connection past the gateway's cap stayed open")
            #expect(try await Self.within(.seconds(30)) { held.allSatisfy(\.closedByServer) }, "idle connections to the gateway stayed open")
            let client = APIClient(http: http, base: gateway.baseURL)
            #expect(try await client.call(.GET, "/health").status == 200)
            #expect(try await gateway.terminate() == 0)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}
