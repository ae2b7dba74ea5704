import ArgumentParser
import FlashOrders
import Foundation

/// `flashsale bench json`: the intake path's hand-written order parser against Foundation's
/// `JSONDecoder` on the same body: the figure that keeps the parser on the hot path (and only
/// there; everything else uses Codable).
struct JSONBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "json",
        abstract: "Compare the order parser on the intake path with JSONDecoder.")

    @Option(help: "Bodies parsed by each.") var count = 200_000

    /// The seeds' body, as JSONDecoder would read it (strictly typed: no lenient fallbacks).
    struct CodableOrder: Decodable {
        struct Item: Decodable {
            var productID: String
            var quantity: Int
            var price: Double?
            enum CodingKeys: String, CodingKey { case productID = "product_id", quantity, price }
        }
        var customerID: Int
        var items: [Item]
        enum CodingKeys: String, CodingKey { case customerID = "customer_id", items }
    }

    func run() async throws {
        let body = Array(#"{"customer_id": 1234, "items": [{"product_id": "PROD-001", "quantity": 2, "price": 49.99}, {"product_id": "PROD-002", "quantity": 1, "price": 19.99}]}"#.utf8)
        let data = Data(body)
        let clock = ContinuousClock()
        var checksum = 0
        let handStart = clock.now
        for _ in 0..<count { checksum &+= try OrderRequest.decode(body).items.count }
        let hand = (clock.now - handStart).asSeconds
        let decoder = JSONDecoder()
        let codableStart = clock.now
        for _ in 0..<count { checksum &+= try decoder.decode(CodableOrder.self, from: data).items.count }
        let codable = (clock.now - codableStart).asSeconds
        print(String(format: "order body (%d bytes), %d parses each", body.count, count))
        print(String(format: "hand-written OrderRequest.decode: %9.0f bodies/s  %6.2f µs each", Double(count) / hand, hand / Double(count) * 1e6))
        print(String(format: "JSONDecoder (Codable):           %9.0f bodies/s  %6.2f µs each", Double(count) / codable, codable / Double(count) * 1e6))
        print(String(format: "ratio: %.1fx (checksum %d)", codable / hand, checksum))
    }
}
