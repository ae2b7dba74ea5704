import Crypto
import FlashPayments
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

@testable import FlashGateway

/// The gateway's HTTP API as its server and client are generated from `openapi.yaml`: every order
/// id a client may send reaches the ledger as itself, bad requests change nothing, and the
/// generated code is the document's.
@Suite("Payment gateway API")
struct GatewayAPITests {
    /// Ids that need escaping in a path, or look escaped already.
    static let ids = ["a b", "a/b", "100%", "#1", "why?", "a+b", "café", "注文-1", "%2F", "a%20b", "x;y=z", ".."]

    /// The secret of the tests' gateways.
    static let token = "gateway-test-secret"
    static let bearer: HTTPFields = [.authorization: "Bearer \(token)"]

    static func authorized(_ headers: HTTPFields, _ secret: String = token) -> HTTPFields {
        var headers = headers
        headers[.authorization] = "Bearer \(secret)"
        return headers
    }

    static func server() -> (GatewayServer, InMemoryPaymentLedger) {
        let ledger = InMemoryPaymentLedger()
        let gateway = SimulatedPaymentGateway(configuration: .init(latency: .fixed(.zero)), ledger: ledger)
        return (GatewayServer(gateway: gateway, ledger: ledger, token: token), ledger)
    }

    static func application(_ server: GatewayServer) throws -> some ApplicationProtocol {
        Application(router: try server.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }

    @Test func theGeneratedCodeIsTheDocuments() throws {
        let gateway = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/FlashGateway")
        var document = try Data(contentsOf: gateway.appendingPathComponent("openapi.yaml"))
        document += try Data(contentsOf: gateway.appendingPathComponent("openapi-generator-config.yaml"))
        let digest = SHA256.hash(data: document).map { String(format: "%02x", $0) }.joined()
        let recorded = try String(contentsOf: gateway.appendingPathComponent("Generated/openapi.sha256"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(digest == recorded, "openapi.yaml changed after the code was generated: run scripts/generate-gateway-api")
    }

    @Test func everyOrderIDReachesTheLedgerAsItself() async throws {
        let (server, ledger) = Self.server()
        try await Self.application(server).test(.live) { client in
            let port = try #require(client.port)
            let remote = HTTPPaymentGateway(configuration: .init(baseURL: "http://127.0.0.1:\(port)", token: Self.token, requestTimeout: .seconds(10)))
            do {
                // Half charged, half voided before any charge, each through the generated client.
                for (index, id) in Self.ids.enumerated() {
                    if index.isMultiple(of: 2) {
                        guard case let .approved(chargeID) = try await remote.charge(orderID: id, amount: 5) else {
                            Issue.record("'\(id)' was not approved")
                            continue
                        }
                        #expect(try await remote.finalOutcome(orderID: id) == .approved(chargeID: chargeID), "\(id)")
                        // Asked again: the same charge, nothing taken.
                        #expect(try await remote.charge(orderID: id, amount: 5) == .approved(chargeID: chargeID), "\(id)")
                    } else {
                        #expect(try await remote.finalOutcome(orderID: id) == .voided, "\(id)")
                        // A charge after the void is not taken.
                        #expect(try await remote.charge(orderID: id, amount: 5) == .voided, "\(id)")
                    }
                }
                for (index, id) in Self.ids.enumerated() {
                    let stored = try await ledger.outcome(for: id)
                    if index.isMultiple(of: 2) {
                        guard case .approved = stored else { Issue.record("'\(id)' is \(String(describing: stored)) in the ledger"); continue }
                    } else {
                        #expect(stored == .voided, "\(id)")
                    }
                    // And a client escaping the id by hand reads the same charge.
                    let escaped = id.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                    let response = try await client.execute(uri: "/charges/\(escaped)", method: .get, headers: Self.bearer)
                    #expect(response.status == .ok, "\(id)")
                    let body = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]
                    #expect(body?["order_id"] as? String == id)
                }
                let stats = try await remote.statistics()
                #expect(stats.charges == Self.ids.count / 2)
                #expect(stats.voided == Self.ids.count / 2)
                #expect(stats.duplicateChargesPrevented >= Self.ids.count / 2)
            } catch {
                try await remote.shutdown()
                throw error
            }
            try await remote.shutdown()
        }
    }

    @Test func badRequestsGetAClearJSONErrorAndChangeNothing() async throws {
        let (server, _) = Self.server()
        try await Self.application(server).test(.live) { client in
            let charge = ByteBuffer(string: #"{"order_id":"o-1","amount":5}"#)
            let cases: [(String, HTTPRequest.Method, HTTPFields, ByteBuffer?, HTTPResponse.Status)] = [
                ("no key", .post, [.contentType: "application/json"], charge, .badRequest),
                ("key of another order", .post, [.contentType: "application/json", HTTPField.Name("Idempotency-Key")!: "o-2"], charge, .unprocessableContent),
                ("not JSON", .post, [.contentType: "application/json", HTTPField.Name("Idempotency-Key")!: "o-1"], ByteBuffer(string: "{"), .badRequest),
                ("negative amount", .post, [.contentType: "application/json", HTTPField.Name("Idempotency-Key")!: "o-1"],
                 ByteBuffer(string: #"{"order_id":"o-1","amount":-1}"#), .badRequest),
                ("empty order id", .post, [.contentType: "application/json", HTTPField.Name("Idempotency-Key")!: ""],
                 ByteBuffer(string: #"{"order_id":"","amount":1}"#), .badRequest),
                ("too large", .post, [.contentType: "application/json", HTTPField.Name("Idempotency-Key")!: "o-1"],
                 ByteBuffer(repeating: UInt8(ascii: " "), count: GatewayServer.maxBody + 1), .contentTooLarge),
            ]
            for (name, method, headers, body, status) in cases {
                let response = try await client.execute(uri: "/charges", method: method, headers: Self.authorized(headers), body: body)
                #expect(response.status == status, "\(name)")
                let error = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]
                let fields = error?["error"] as? [String: Any]
                #expect((fields?["message"] as? String)?.isEmpty == false, "\(name): \(String(buffer: response.body))")
                #expect(fields?["code"] as? String == status.reasonPhrase.lowercased().replacingOccurrences(of: " ", with: "_"), "\(name)")
            }
            for path in ["/charges/%FF/void", "/charges/a%00b/void", "/charges/%FF"] {
                let response = try await client.execute(uri: path, method: path.hasSuffix("void") ? .post : .get, headers: Self.bearer)
                #expect(response.status == .badRequest, "\(path): \(String(buffer: response.body))")
            }
            let stats = try await client.execute(uri: "/stats", method: .get)
            let figures = try JSONSerialization.jsonObject(with: Data(buffer: stats.body)) as? [String: Any]
            #expect(figures?["charges"] as? Int == 0)
            #expect(figures?["voided"] as? Int == 0)
            #expect(figures?["declines"] as? Int == 0)
        }
    }

    @Test func aChargeToAGatewayNobodyRunsIsKnownNeverSent() async throws {
        // A port that was free a moment ago: nothing listens there.
        let port = try await Self.application(Self.server().0).test(.live) { client in client.port ?? 0 }
        let remote = HTTPPaymentGateway(configuration: .init(baseURL: "http://127.0.0.1:\(port)", token: Self.token, requestTimeout: .seconds(5), attempts: 2,
                                                             backoff: .milliseconds(10)))
        await #expect {
            try await remote.charge(orderID: "o-1", amount: 5)
        } throws: { error in
            (error as? TransientPaymentError)?.reachedGateway == false
        }
        try await remote.shutdown()
    }

    @Test func answersOutsideTheAPIAreRefusedOnceAndA2xxHealthCheckIsUp() async throws {
        // A proxy in front of the gateway: an HTML 404 for charges, 204 for the health check.
        let asked = Counter()
        let router = Router()
        router.post("/charges") { _, _ in
            asked.add()
            return Response(status: .notFound, headers: [.contentType: "text/html"], body: .init(byteBuffer: ByteBuffer(string: "<h1>no</h1>")))
        }
        router.get("/health") { _, _ in Response(status: .noContent) }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let remote = HTTPPaymentGateway(configuration: .init(baseURL: "http://127.0.0.1:\(try #require(client.port))", token: Self.token, requestTimeout: .seconds(5),
                                                                 attempts: 4, backoff: .milliseconds(10)))
            await #expect {
                try await remote.charge(orderID: "o-1", amount: 5)
            } throws: { error in
                (error as? TransientPaymentError)?.message.contains("refused") == true
            }
            #expect(asked.value == 1, "a refusal is not asked again")
            await #expect(throws: Never.self) { try await remote.probe() }
            try await remote.shutdown()
        }
    }

    @Test func onlyCallersWithTheSecretChargeLookUpOrVoidAndAWrongSecretIsNeverTakenForADecline() async throws {
        let (server, ledger) = Self.server()
        try await Self.application(server).test(.live) { client in
            let charge = ByteBuffer(string: #"{"order_id":"o-1","amount":5}"#)
            let key: HTTPFields = [.contentType: "application/json", HTTPField.Name("Idempotency-Key")!: "o-1"]
            for (headers, status) in [(key, HTTPResponse.Status.unauthorized), (Self.authorized(key, "wrong"), .forbidden)] {
                #expect(try await client.execute(uri: "/charges", method: .post, headers: headers, body: charge).status == status)
                #expect(try await client.execute(uri: "/charges/o-1/void", method: .post, headers: headers).status == status)
                #expect(try await client.execute(uri: "/charges/o-1", method: .get, headers: headers).status == status)
                // The router skips empty segments: so does the check.
                #expect(try await client.execute(uri: "//charges/o-1/void", method: .post, headers: headers).status == status)
                #expect(try await client.execute(uri: "//charges", method: .post, headers: headers, body: charge).status == status)
            }
            #expect(try await ledger.outcome(for: "o-1") == nil, "a refused caller changed the ledger")
            // Health and figures stay open to monitoring.
            #expect(try await client.execute(uri: "/health", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/stats", method: .get).status == .ok)
            // A worker with a wrong secret gets a transient error (retried, its order left open),
            // never an outcome that would settle the order.
            let port = try #require(client.port)
            let wrong = HTTPPaymentGateway(configuration: .init(baseURL: "http://127.0.0.1:\(port)", token: "wrong", requestTimeout: .seconds(5),
                                                                attempts: 1))
            // Refused before any charge: not counted against the order (no delivery spent), and
            // the health probe, which tries the secret too, says the gateway is as good as away.
            await #expect { _ = try await wrong.charge(orderID: "o-1", amount: 5) } throws: { error in
                (error as? TransientPaymentError)?.reachedGateway == false
            }
            await #expect(throws: TransientPaymentError.self) { _ = try await wrong.finalOutcome(orderID: "o-1") }
            await #expect(throws: TransientPaymentError.self) { try await wrong.probe() }
            try await wrong.shutdown()
            #expect(try await ledger.outcome(for: "o-1") == nil)
        }
    }
}

final class Counter: Sendable {
    private let count = Atomic<Int>(0)
    func add() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}
