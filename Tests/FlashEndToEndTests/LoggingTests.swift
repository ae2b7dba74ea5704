import AsyncHTTPClient
import FlashCore
import Foundation
import Testing

/// The logs of a real `flashsale serve`, as a log shipper reads them.
@Suite("Logs", .serialized)
struct LoggingTests {
    static let adminToken = "adm1n-t0ken-never-logged"
    static let awsSecret = "wJalrXUtnFEMI-never-logged-K7MDENG"
    static let awsSessionToken = "FwoGZXIvYXdzE-never-logged-token"

    @Test func jsonLogsCarryTheRequestIdAndOrderIdsAndNoSecret() async throws {
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let data = ServerProcess.temporaryDataPath()
        let server = try await ServerProcess(
            dataPath: data,
            arguments: ["--workers", "2", "--payment-latency", "5ms", "--payment-error-rate", "0.3", "--retry-backoff", "10ms", "--max-receives", "50",
                        "--log-format", "json", "--log-level", "trace", "--admin-token", Self.adminToken],
            environment: ["AWS_ACCESS_KEY_ID": "AKIAEXAMPLENEVERLOGGED", "AWS_SECRET_ACCESS_KEY": Self.awsSecret,
                          "AWS_SESSION_TOKEN": Self.awsSessionToken])
        let client = APIClient(http: http, base: server.baseURL)
        do {
            let bearer = [("Authorization", "Bearer \(Self.adminToken)")]
            #expect(try await client.call(.PUT, "/products/PROD-001", json: #"{"stock": 100}"#, headers: bearer).status == 200)
            #expect(try await client.call(.PUT, "/products/PROD-001", json: #"{"stock": 100}"#,
                                          headers: [("Authorization", "Bearer wrong-\(Self.adminToken)")]).status == 403)
            let placed = try await client.call(.POST, "/orders/async", json: seedOrder, headers: [("X-Request-Id", "e2e-request-1")])
            #expect(placed.headers.first(name: "X-Request-Id") == "e2e-request-1")
            for _ in 0..<9 { _ = try await client.call(.POST, "/orders/async", json: seedOrder) }
            #expect(try await client.call(.POST, "/orders/async", json: "{not json", headers: [("X-Request-Id", "e2e-bad-1")]).status == 400)
            try await expectEventually(timeout: .seconds(30)) { try await client.stats().int("orders", "completed") == 10 }
        } catch {
            server.kill9()
            try? await http.shutdown()
            throw error
        }
        #expect(try await server.terminate() == 0)
        try await http.shutdown()

        let text = try String(contentsOfFile: server.logPath, encoding: .utf8)
        for secret in [Self.adminToken, Self.awsSecret, Self.awsSessionToken] {
            #expect(!text.contains(secret), "a secret reached the log")
        }
        var lines: [JSONValue] = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("flashsale listening on") { continue }
            guard let json = try? JSONValue.parse(Array(line.utf8)) else {
                Issue.record("not a JSON line: \(line)")
                continue
            }
            #expect(json["time"]?.string != nil && json["level"]?.string != nil && json["message"]?.string != nil, "\(line)")
            lines.append(json)
        }
        // The client's request id is on the lines of its request, the refused request's too.
        #expect(lines.contains { $0["hb.request.id"]?.string == "e2e-request-1" && $0["route"]?.string == "/orders/async" && $0["status"]?.string == "202" })
        #expect(lines.contains { $0["hb.request.id"]?.string == "e2e-bad-1" && $0["status"]?.string == "400" })
        // Every worker line about an order names it.
        let finished = lines.filter { $0["message"]?.string == "order finished" }
        #expect(finished.count == 10)
        #expect(finished.allSatisfy { $0["order_id"]?.string?.isEmpty == false })
        let retries = lines.filter { $0["message"]?.string == "charge to be tried again" }
        #expect(retries.allSatisfy { $0["order_id"]?.string?.isEmpty == false })
    }

    @Test func anUnknownLogFormatOrLevelIsRefusedAtStart() async throws {
        for arguments in [["--log-format", "xml"], ["--log-level", "loud"]] {
            let (_, status, message) = try ServerProcess.runToExit(arguments)
            #expect(status != 0)
            #expect(message.contains(arguments[0]), "\(message)")
        }
    }
}
