import AsyncHTTPClient
import Foundation
import Testing

/// Admin routes need a secret always (issue 25): with none configured, `serve` generates one
/// into an owner-only file beside the database and says where; a loopback client without it
/// (every client behind a proxy on the same host) is refused, and changes nothing.
@Suite("The admin secret of a real server")
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
}
