import FlashCore
import FlashServer
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// Paths and methods as clients write them (found by schemathesis against the OpenAPI document).
@Suite("Paths and methods over HTTP")
struct PathRoutesTests {
    @Test func escapesThatAreNotUTF8AreRefusedNeverMatchedRaw() async throws {
        // Through the router itself: AsyncHTTPClient cannot send such a path (it sends `/`).
        let system = try await FlashSystem.open(TestSystem.configuration(), logger: TestSystem.logger)
        try await system.application(logger: TestSystem.logger).test(.router) { client in
            let broken = try await client.execute(uri: "/products/%FF", method: .put,
                                                  headers: [.authorization: "Bearer \(TestSystem.adminToken)"],
                                                  body: ByteBuffer(string: #"{"stock": 1}"#)) { $0 }
            #expect(broken.status == .badRequest, "\(broken.status) \(String(buffer: broken.body))")
            #expect(String(buffer: broken.body).contains("invalid_path"))
        }
        try await system.close()
    }

    @Test func pathParametersArePercentDecodedSoTheyNameWhatABodyNames() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { _, client in
            let put = try await client.call(.put, "/products/caf%C3%A9", json: #"{"stock": 1}"#)
            #expect(put.status == .ok)
            #expect(put.string("product_id") == "café")
            // The body spells the id decoded: the same product, so its stock holds.
            let order = #"{"customer_id": "c9", "items": [{"product_id": "café", "quantity": 5}]}"#
            let refused = try await client.call(.post, "/orders/async", json: order)
            #expect(refused.status == .conflict)
            #expect(refused.errorCode == "sold_out")
            #expect(try await client.call(.get, "/products/caf%C3%A9").int("stock") == 1)
            // A client order id with a space is found again through its encoded path.
            let spaced = try await client.call(.post, "/orders/async",
                                               json: #"{"customer_id": "c1", "items": [{"product_id": "p"}], "order_id": "a b"}"#)
            #expect(spaced.status == .accepted)
            #expect(try await client.call(.get, "/orders/a%20b").string("order_id") == "a b")
            #expect(try await client.call(.get, "/products/%25FF").status == .notFound, "no product named by the raw escape")
            // An id that decodes to a control character names nothing (PostgreSQL refuses NUL in text).
            for path in ["/orders/%00", "/products/a%0Ab", "/orders/x%7F"] {
                let reply = try await client.call(.get, path)
                #expect(reply.status == .badRequest, "\(path)")
                #expect(reply.errorCode == "invalid_path")
            }
        }
    }

    @Test func headIsAnsweredNotAllowedWithTheMethodsAPathTakes() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { _, client in
            let head = try await client.execute(uri: "/stock", method: .head) { $0 }
            #expect(head.status == .methodNotAllowed)
            #expect(head.headers[.allow] == "GET")
            let patch = try await client.call(.patch, "/products/x")
            #expect(patch.headers[.allow] == "PUT, GET")
        }
    }

    @Test func theRouteNamesAreNotClientOrderIds() async throws {
        try await TestSystem.withLiveSystem(TestSystem.configuration()) { system, client in
            for reserved in ["async", "sync"] {
                let reply = try await client.call(.post, "/orders/async",
                                                  json: #"{"customer_id": "c1", "items": [{"product_id": "p"}], "order_id": "\#(reserved)"}"#)
                #expect(reply.status == .badRequest)
                #expect(reply.errorCode == "invalid_field")
            }
            #expect(try await system.store.counts().total == 0)
        }
    }
}
