import AsyncHTTPClient
import FlashCore
import Foundation
import NIOHTTP1
import Synchronization
import Testing

/// The seed engine's own flow against the real binary: reset the stock, a storm of buyers.
@Suite("Flash sale against the real server", .serialized)
struct FlashSaleTests {
    @Test func resetTenThenAThousandConcurrentBuyersSellExactlyTen() async throws {
        // 200 connections, one per buyer in flight below; a generous connect timeout (it is also
        // how long a request may wait for a pooled connection) for 200 connections opening at
        // once on a slow machine.
        let connections = 200
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(
            timeout: .init(connect: .seconds(60)),
            connectionPool: .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: connections)))
        do {
            let server = try await ServerProcess(dataPath: ServerProcess.temporaryDataPath(), arguments: [
                "--workers", "4", "--payment-latency", "20ms"])
            let client = APIClient(http: http, base: server.baseURL)
            #expect(try await client.call(.POST, "/reset-stock/10").status == 200)
            let tally = Acknowledged()
            let refused = Acknowledged()
            // 1,000 buyers, 200 at a time: the client keeps at most 200 connections, so the server
            // never had more than 200 requests at once even when all 1,000 buyers started together;
            // the rest queued inside the client, each against the client's wall-clock allowance
            // for getting a connection, and failed with getConnectionFromPoolTimeout whenever the
            // whole burst took longer than that on a slow machine. With as many buyers in flight as
            // there are connections the server sees the same concurrency, and no request waits
            // behind the others.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for first in 0..<connections {
                    group.addTask {
                        for user in stride(from: first, to: 1000, by: connections) {
                            let reply = try await client.call(.POST, "/buy", json: #"{"userId": \#(user)}"#)
                            if reply.status == 200, let id = reply.string("order_id") {
                                tally.add(id)
                            } else if reply.status == 400, reply.string("error", "message") == "Fail: Sold Out" {
                                refused.add("\(user)")
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(tally.count == 10)
            #expect(refused.count == 990)
            #expect(try await client.call(.GET, "/stock").int("stock") == 0)
            try await expectEventually { try await client.stats().int("orders", "completed") == 10 }
            let stats = try await client.stats()
            #expect(stats.int("orders", "total") == 10)
            #expect(stats.int("payments", "charges") == 10)
            let product = try await client.call(.GET, "/products/iphone_16")
            #expect(product.int("sold") == 10)
            #expect(product.int("reserved") == 0)
            _ = try await server.terminate()
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}
