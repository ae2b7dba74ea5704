import FlashBackend
import FlashCore
import FlashOrders
import Hummingbird

/// The seed flash-sale engine's API, so its users and its attack script can switch unchanged:
/// `POST /reset-stock/{count}` (admin), `GET /stock`, `POST /buy`.
///
/// Unlike the seed: a missing stock key is "sold out" (not a 500); the stock decision is made in
/// the transaction that stores the order and its message, so no unit is lost to a failure after
/// the decrement; and `/buy` answers as soon as the order is durable.
struct FlashSaleController {
    let store: any OrderStore
    let catalog: any Catalog
    let flashProduct: String
    let accepted: RateMeter
    let orderMetrics: OrderMetrics
    /// The placing routes' admission deadline.
    let admission: AdmissionControl
    /// Products just refused as sold out.
    let soldOut: SoldOutMemory

    func addRoutes(to routes: inout RouteTable<FlashRequestContext>) {
        routes.on("/reset-stock/:count", method: .post, admin: true, use: resetStock)
        routes.on("/stock", method: .get, use: stock)
        routes.on("/buy", method: .post, use: buy)
    }

    @Sendable func resetStock(_ request: Request, context: FlashRequestContext) async throws -> Response {
        let text = try context.parameters.require("count")
        guard let count = Int(text), count >= 1, count <= ProductsController.maxUnits else {
            throw APIError.badRequest("invalid_count", "the stock count must be a whole number from 1 to \(ProductsController.maxUnits), not '\(text)'")
        }
        let product = try await catalog.setStock(id: flashProduct, stock: count)
        soldOut.forget(flashProduct)
        return Response.json(.ok, #"{"message":"Stock reset to \#(product.stock)","product_id":\#(JSONText.quoted(product.productID)),"stock":\#(product.stock)}"#)
    }

    @Sendable func stock(_ request: Request, context: FlashRequestContext) async throws -> Response {
        let stock = try await catalog.product(id: flashProduct)?.stock ?? 0
        return Response.json(.ok, #"{"stock":\#(stock)}"#)
    }

    @Sendable func buy(_ request: Request, context: FlashRequestContext) async throws -> Response {
        var request = request
        let body = try await request.collectBody(upTo: context.maxUploadSize)
        var customer = "anonymous"
        if body.readableBytes > 0 {
            let object: [String: JSONValue]
            do {
                guard let parsed = try JSONValue.parse(body.readableBytesView).object else {
                    throw APIError.badRequest("invalid_json", "the body must be a JSON object such as {\"userId\": 42}")
                }
                object = parsed
            } catch let error as JSONParseError {
                throw APIError.badRequest("invalid_json", "the body is not valid JSON (\(error.reason) at byte \(error.offset))")
            }
            if let user = object["userId"] ?? object["user_id"] ?? object["customer_id"], user != .null {
                do {
                    customer = try OrderRequest.identifier(user, field: "userId")
                } catch {
                    throw APIError.badRequest(error.code, error.message)
                }
            }
        }
        let order = NewOrder(id: TimeOrderedID.make(), customerID: customer,
                             items: [OrderItem(productID: flashProduct, quantity: 1, price: nil)],
                             channel: .buy, idempotencyKey: try OrderIntake.idempotencyKey(request), requiresCatalog: true,
                             idChosenByClient: false, admitBy: admission.deadlineFromNow())
        let placement: Placement
        do {
            placement = try await OrderIntake.placeRemembering(order, store: store, soldOut: soldOut) { try await $0.placeQueued($1) }
        } catch let conflict as PlacementConflict {
            throw OrderIntake.apiError(conflict)
        } catch let refusal as InventoryRefusal {
            // The seed answers its refusals with 400 and "Fail: Sold Out"; its clients count on that.
            switch refusal {
            case .soldOut, .unknownProduct:
                throw APIError(.badRequest, code: "sold_out", message: "Fail: Sold Out")
            case let .limitExceeded(_, limit):
                throw APIError(.badRequest, code: "limit_exceeded", message: "Fail: limit of \(limit) per customer reached")
            }
        }
        if placement.created {
            accepted.record()
            orderMetrics.recordAccepted(.buy)
        }
        return Response.json(.ok, #"{"order_id":\#(JSONText.quoted(placement.order.id)),"status":"\#(placement.order.status.rawValue)","message":"Order Queued..."}"#,
                             headers: OrderIntake.headers(for: placement))
    }
}
