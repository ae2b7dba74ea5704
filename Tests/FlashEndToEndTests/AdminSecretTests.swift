import AsyncHTTPClient
import Foundation
import Testing

/// Admin routes need a secret always (issue 25): with none configured, `serve` generates one
/// into an owner-only file beside the database and says where; a loopback client without it
/// (every client behind a proxy on the same host) is refused, and changes nothing.
@Suite("The secrets of real servers")
struct AdminSecretTests {
    @Test func withNoSecretConfiguredServeGeneratesAnOwnerOnlyFileAndLoopbackAloneIsRefused() async throws {
        let data = ServerProcess.temporaryDataPath()
        let server = try await ServerProcess(dataPath: data, arguments: ["--workers", "0"], environment: ["FLASHSALE_ADMIN_TOKEN": ""])
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let file = URL(fileURLWithPath: data).deletingLastPathComponent().appendingPathComponent("flashsale.admin-token").path
            #expect(server.log.contains("admin token generated into \(file)"), "\(server.log)")
            let attributes = try FileManager.default.attributesOfItem(atPath: file)
            #expect((attributes[.posixPermissions] as? Int) == 0o600)
            let token = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            let client = APIClient(http: http, base: server.baseURL)
            let anonymous = try await client.call(.POST, "/reset-stock/5", authorized: false)
            #expect(anonymous.status == 401)
            #expect(anonymous.string("error", "code") == "unauthorized")
            #expect(try await client.call(.PUT, "/products/TV", json: #"{"stock":1}"#, authorized: false).status == 401)
            #expect(try await client.call(.POST, "/admin/queues/payments/purge", authorized: false).status == 401)
            #expect(try await client.call(.GET, "/stock").int("stock") == 0)
            let bearer = [("Authorization", "Bearer \(token)")]
            #expect(try await client.call(.POST, "/reset-stock/5", headers: bearer).status == 200)
            #expect(try await client.call(.GET, "/stock").int("stock") == 5)
            #expect(!server.log.contains(token), "the secret itself must never be printed")
            #expect(try await server.terminate() == 0)
            // Restarted, it keeps the same secret.
            let again = try await ServerProcess(dataPath: data, arguments: ["--workers", "0"], environment: ["FLASHSALE_ADMIN_TOKEN": ""])
            #expect(try await APIClient(http: http, base: again.baseURL).call(.POST, "/reset-stock/7", headers: bearer).status == 200)
            #expect(try await again.terminate() == 0)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    @Test func theGatewayGeneratesItsSecretAndOnlyProcessesGivenItCharge() async throws {
        let data = ServerProcess.temporaryDataPath()
        let directory = URL(fileURLWithPath: data).deletingLastPathComponent()
        let gateway = try await ServerProcess("gateway", dataPath: directory.appendingPathComponent("ledger.db").path,
                                              arguments: ["--latency", "5ms"], environment: ["FLASHSALE_GATEWAY_TOKEN": ""])
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let file = directory.appendingPathComponent("flashsale.gateway-token").path
            #expect(gateway.log.contains("gateway token generated into \(file)"), "\(gateway.log)")
            let attributes = try FileManager.default.attributesOfItem(atPath: file)
            #expect((attributes[.posixPermissions] as? Int) == 0o600)
            // Without the secret, nobody charges or voids.
            let anonymous = APIClient(http: http, base: gateway.baseURL, token: "")
            #expect(try await anonymous.call(.POST, "/charges/o-1/void", authorized: false).status == 401)
            // A process told to charge through it, with no secret to send, does not start.
            let refused = try ServerProcess.runToExit(["--payment-url", gateway.baseURL])
            #expect(refused.status != 0)
            #expect(refused.errors.contains("FLASHSALE_GATEWAY_TOKEN"), "\(refused.errors)")
            // Given the file (or finding it beside its database), it charges.
            let api = try await ServerProcess(dataPath: data, arguments: [
                "--workers", "0", "--payment-url", gateway.baseURL, "--payment-token-file", file,
            ], environment: ["FLASHSALE_GATEWAY_TOKEN": ""])
            let reply = try await APIClient(http: http, base: api.baseURL).call(.POST, "/orders/sync", json: seedOrder)
            #expect(reply.status == 200, "\(String(describing: reply.json))")
            #expect(reply.string("status") == "completed")
            #expect(try await APIClient(http: http, base: gateway.baseURL).call(.GET, "/stats").int("charges") == 1)
            #expect(try await api.terminate() == 0)
            #expect(try await gateway.terminate() == 0)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}
