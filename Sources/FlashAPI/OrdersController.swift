import FlashCore
import FlashOrders
import FlashPayments
import HTTPTypes
import Hummingbird

/// `POST /orders/sync`, `POST /orders/async`, `GET /orders/{id}`.
struct OrdersController<Context: RequestContext> {
    let services: FlashServices

    func addRoutes(to routes: inout RouteTable<Context>) {
        routes.on("/orders/async", method: .post, use: placeAsync)
        routes.on("/orders/sync", method: .post, use: placeSync)
        routes.on("/orders/:id", method: .get, use: show)
    }

    // MARK: Async

    /// Validates, stores the order with its message in one transaction, answers 202.
    @Sendable func placeAsync(_ request: Request, context: Context) async throws -> Response {
        let order = try await OrderIntake.newOrder(from: request, context: context, channel: .async)
        let placement = try await OrderIntake.placeQueued(order, store: services.store)
        if placement.created { services.accepted.record() }
        return Response.json(.accepted, OrderJSON.accepted(orderID: placement.order.id, messageID: placement.messageID,
                                                           status: placement.order.status))
    }

    // MARK: Sync

    /// Waits for a checkout lane, charges, answers 200 with the finished order.
    @Sendable func placeSync(_ request: Request, context: Context) async throws -> Response {
        let order = try await OrderIntake.newOrder(from: request, context: context, channel: .sync)
        let lanes = services.lanes
        let predicted = lanes.predictedWait
        if predicted > services.syncTimeout {
            let retryAfter = max(1, Int(predicted.asSeconds.rounded(.up)))
            throw APIError(.serviceUnavailable, code: "overloaded",
                           message: "checkout lanes are full: the predicted wait of \(predicted.shortDescription) exceeds the \(services.syncTimeout.shortDescription) limit; nothing was charged",
                           headers: [.retryAfter: "\(retryAfter)"])
        }
        guard await lanes.enter(timeout: services.syncTimeout) else {
            throw APIError(.gatewayTimeout, code: "timeout",
                           message: "no checkout lane freed up within \(services.syncTimeout.shortDescription); nothing was charged")
        }
        var serviceTime: Duration?
        defer { lanes.leave(serviceTime: serviceTime) }
        let placement: Placement
        do {
            placement = try await services.store.placeImmediate(order)
        } catch let refusal as InventoryRefusal {
            throw OrderIntake.apiError(refusal)
        }
        guard placement.created else {
            return Response.json(.ok, OrderJSON.order(placement.order))
        }
        let started = ContinuousClock.now
        let result = await charge(placement.order)
        serviceTime = ContinuousClock.now - started
        let finished = try await services.store.finish(placement.order.id, result: result) ?? placement.order
        services.processed.record()
        return Response.json(.ok, OrderJSON.order(finished))
    }

    /// Charges with a few quick retries on transient errors (the customer is waiting).
    private func charge(_ order: Order) async -> OrderResult {
        var lastError = "payment gateway unavailable"
        for attempt in 0..<3 {
            do {
                switch try await services.gateway.charge(orderID: order.id, amount: order.total) {
                case .approved: return .completed
                case let .declined(reason): return .failed(reason: "payment declined: \(reason)")
                }
            } catch let error as TransientPaymentError {
                lastError = error.message
                try? await Task.sleep(for: .milliseconds(50 << attempt))
            } catch {
                lastError = "\(error)"
                break
            }
        }
        return .failed(reason: "payment failed: \(lastError)")
    }

    // MARK: Lookup

    @Sendable func show(_ request: Request, context: Context) async throws -> Response {
        let id = try context.parameters.require("id")
        guard let order = try await services.store.order(id: id) else {
            throw APIError.notFound("no order with id '\(id)'")
        }
        guard order.status == .pending else { return Response.json(.ok, OrderJSON.order(order)) }
        let position = try await services.store.queuePosition(of: order)
        var eta: Int64?
        if let position, let rate = processingRate, rate > 0 {
            eta = WallClock.nowMillis() + Int64((Double(position + 1) / rate * 1000).rounded())
        }
        return Response.json(.ok, OrderJSON.order(order, queuePosition: position, estimatedCompletionMillis: eta))
    }

    /// Orders per second the workers finish: measured, or W / latency before any were measured.
    private var processingRate: Double? {
        let measured = services.processed.perSecond
        if measured > 0 { return measured }
        guard let workers = services.workers, workers.workerCount > 0 else { return nil }
        let latency = services.gateway.expectedLatency.asSeconds
        return latency > 0 ? Double(workers.workerCount) / latency : nil
    }
}

/// The first steps every order endpoint shares: read, validate, refuse cleanly.
enum OrderIntake {
    static let idempotencyHeader = HTTPField.Name("Idempotency-Key")!

    /// Reads and validates the body into a new order (400 / 413 on bad input).
    static func newOrder(from request: Request, context: some RequestContext, channel: OrderChannel) async throws -> NewOrder {
        var request = request
        let body = try await request.collectBody(upTo: context.maxUploadSize)
        let parsed: OrderRequest
        do {
            parsed = try OrderRequest.decode(body.readableBytesView)
        } catch {
            throw APIError.badRequest(error.code, error.message)
        }
        return NewOrder(id: parsed.orderID ?? TimeOrderedID.make(), customerID: parsed.customerID, items: parsed.items,
                        channel: channel, idempotencyKey: try idempotencyKey(request), idChosenByClient: parsed.orderID != nil)
    }

    static func idempotencyKey(_ request: Request) throws -> String? {
        guard let key = request.headers[idempotencyHeader] else { return nil }
        guard !key.isEmpty, key.utf8.count <= 255 else {
            throw APIError.badRequest("invalid_header", "Idempotency-Key must be 1 to 255 bytes")
        }
        return key
    }

    /// Places a queued order, mapping the inventory gate's refusals to 409.
    static func placeQueued(_ order: NewOrder, store: any OrderStore) async throws -> Placement {
        do {
            return try await store.placeQueued(order)
        } catch let refusal as InventoryRefusal {
            throw apiError(refusal)
        }
    }

    static func apiError(_ refusal: InventoryRefusal) -> APIError {
        switch refusal {
        case .soldOut: return APIError(.conflict, code: "sold_out", message: refusal.description)
        case .limitExceeded: return APIError(.conflict, code: "limit_exceeded", message: refusal.description)
        case .unknownProduct: return APIError(.conflict, code: "unknown_product", message: refusal.description)
        }
    }
}
