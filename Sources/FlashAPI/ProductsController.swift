import FlashCore
import FlashOrders
import Hummingbird

/// `PUT /products/{id}` (admin) and `GET /products/{id}`: the catalog behind the inventory gate.
struct ProductsController {
    let catalog: any Catalog
    /// Products just refused as sold out: a restock forgets them.
    let soldOut: SoldOutMemory

    /// Largest stock or limit accepted.
    static let maxUnits = 1_000_000_000

    func addRoutes(to routes: inout RouteTable<FlashRequestContext>) {
        routes.on("/products", method: .get, use: list)
        routes.on("/products/:id", method: .put, admin: true, use: put)
        routes.on("/products/:id", method: .get, use: show)
    }

    @Sendable func put(_ request: Request, context: FlashRequestContext) async throws -> Response {
        let id = try ProductsController.productID(context)
        var request = request
        let body = try await request.collectBody(upTo: context.maxUploadSize)
        guard let object = (try? JSONValue.parse(body.readableBytesView))?.object else {
            throw APIError.badRequest("invalid_json", "the body must be a JSON object such as {\"stock\": 100, \"per_customer_limit\": 1, \"price\": 999.0}")
        }
        guard let stockValue = object["stock"] else { throw APIError.badRequest("missing_field", "stock is required") }
        let stock = try Self.units(stockValue, field: "stock", minimum: 0)
        var limit: Int?
        if let value = object["per_customer_limit"], value != .null {
            limit = try Self.units(value, field: "per_customer_limit", minimum: 1)
        }
        var price: Double?
        if let value = object["price"], value != .null {
            guard case let .number(number, _) = value, number.isFinite, number >= 0, number <= 1e9 else {
                throw APIError.badRequest("invalid_price", "price must be a number from 0 to 1e9")
            }
            price = number
        }
        let product = try await catalog.putProduct(id: id, stock: stock, perCustomerLimit: limit, price: price)
        soldOut.forget(id)
        return Response.json(.ok, Self.json(product))
    }

    /// `GET /products?limit=N`: the catalog, by product id (at most `limit`, default 100).
    @Sendable func list(_ request: Request, context: FlashRequestContext) async throws -> Response {
        let limit = try request.limit(default: 100, range: 1...1000)
        let products = try await catalog.products(limit: limit)
        return Response.json(.ok, #"{"products":[\#(products.map(Self.json).joined(separator: ","))]}"#)
    }

    @Sendable func show(_ request: Request, context: FlashRequestContext) async throws -> Response {
        let id = try ProductsController.productID(context)
        guard let product = try await catalog.product(id: id) else { throw APIError.notFound("no product with id '\(id)'") }
        return Response.json(.ok, Self.json(product))
    }

    static func productID(_ context: FlashRequestContext) throws -> String {
        let id = try context.parameters.decoded("id")
        do {
            return try OrderRequest.identifier(.string(id), field: "product id")
        } catch {
            throw APIError.badRequest(error.code, error.message)
        }
    }

    /// A whole number of units in `minimum...maxUnits`.
    static func units(_ value: JSONValue, field: String, minimum: Int) throws -> Int {
        guard case let .number(number, integer) = value, let whole = integer ?? Int64(exactly: number) else {
            throw APIError.badRequest("invalid_\(field)", "\(field) must be a whole number")
        }
        guard whole >= minimum, whole <= maxUnits else {
            throw APIError.badRequest("invalid_\(field)", "\(field) must be \(minimum) to \(maxUnits), not \(whole)")
        }
        return Int(whole)
    }

    static func json(_ product: Product) -> String {
        #"{"product_id":\#(JSONText.quoted(product.productID)),"stock":\#(product.stock),"reserved":\#(product.reserved),"sold":\#(product.sold),"per_customer_limit":\#(product.perCustomerLimit.map(String.init) ?? "null"),"price":\#(product.price.map(JSONText.number) ?? "null")}"#
    }
}
