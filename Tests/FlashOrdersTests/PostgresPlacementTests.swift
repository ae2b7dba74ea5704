import FlashBackend
import FlashOrders
@testable import FlashPostgres
import Foundation
import Testing

/// What only the PostgreSQL store has to get right: a group written as one autocommitted
/// statement must not commit after its caller was told it failed.
@Suite("PostgreSQL placement")
struct PostgresPlacementTests {
    @Test(.enabled(if: OrderBackend.postgresURL != nil))
    func anOrderTheServerCannotStoreInTimeFailsAndIsNeverStoredLater() async throws {
        var configuration = try PostgresDatabase.Configuration(url: try #require(OrderBackend.postgresURL))
        configuration.schema = "p_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        configuration.operationTimeout = .seconds(1)
        let backend = try await PostgresBackend(configuration: .init(database: configuration))
        _ = try await backend.catalog.putProduct(id: "TV", stock: 10, perCustomerLimit: nil, price: 300)
        // The store now knows TV: the next order goes in one statement.
        _ = try await backend.orders.placeQueued(OrderStoreContractTests.order("a", [("TV", 1, nil)]))

        // Another session holds TV's row for 3 s, three times the call's limit.
        let (locked, lockTaken) = AsyncStream.makeStream(of: Void.self)
        let holding = Task {
            try await backend.database.transaction(timeout: .seconds(10)) { connection in
                try await connection.query("SELECT 1 FROM fs_products WHERE product_id = 'TV' FOR UPDATE", logger: backend.database.logger)
                lockTaken.yield()
                try await Task.sleep(for: .seconds(3))
            }
        }
        for await _ in locked { break }
        let late = OrderStoreContractTests.order("b", [("TV", 1, nil)])
        await #expect(throws: BackendUnavailable.self) {
            try await backend.orders.placeQueued(late)
        }
        try await holding.value

        // The lock is gone: the statement that waited on it must not have gone on to commit.
        try await Task.sleep(for: .milliseconds(600))
        #expect(try await backend.orders.order(id: late.id) == nil)
        #expect(try await backend.catalog.product(id: "TV")?.stock == 9)
        #expect(try await backend.payments.statistics().total == 1)
        try await backend.database.dropSchema()
        try await backend.shutdown()
    }
}
