import FlashBackend
import FlashCore
import FlashOrders
import FlashPayments
import FlashWorkers
import Foundation
import HTTPTypes
import Hummingbird

/// `POST /orders/sync`, `POST /orders/async`, `GET /orders/{id}`.
struct OrdersController<Context: RequestContext> {
    let store: any OrderStore
    let gateway: any PaymentGateway
    let lanes: CheckoutLanes
    let syncTimeout: Duration
    let accepted: RateMeter
    let processed: RateMeter
    let orderMetrics: OrderMetrics
    /// The fleet's figures, for the ETA of a pending order.
    let membership: FleetMembership
    /// The placing routes' admission deadline.
    let admission: AdmissionControl
    /// Products just refused as sold out.
    let soldOut: SoldOutMemory

    func addRoutes(to routes: inout RouteTable<Context>) {
        routes.on("/orders/async", method: .post, use: placeAsync)
        routes.on("/orders/sync", method: .post, use: placeSync)
        routes.on("/orders/:id", method: .get, use: show)
        routes.on("/admin/orders", method: .get, admin: true, use: browse)
        routes.on("/admin/orders/:id/history", method: .get, admin: true, use: history)
    }

    // MARK: Async

    /// Validates, stores the order with its message in one transaction, answers 202.
    @Sendable func placeAsync(_ request: Request, context: Context) async throws -> Response {
        var order = try await OrderIntake.newOrder(from: request, context: context, channel: .async)
        order.admitBy = admission.deadlineFromNow()
        let placement = try await OrderIntake.placeQueued(order, store: store, soldOut: soldOut)
        if placement.created {
            accepted.record()
            orderMetrics.recordAccepted(.async)
        }
        return Response.json(.accepted, OrderJSON.accepted(orderID: placement.order.id, messageID: placement.messageID,
                                                           status: placement.order.status),
                             headers: OrderIntake.headers(for: placement))
    }

    // MARK: Sync

    /// Waits for a checkout lane, charges, answers 200 with the finished order.
    ///
    /// The promise: no customer is held longer than `syncTimeout`, counted from the request's
    /// arrival and covering the lane, the gateway's own concurrency limit and the charge. When
    /// the gateway has not answered by then, the order is settled by the rule of final states
    /// (``OrderSettler``): charged after all → 200 completed; not charged → voided, failed, 504
    /// saying nothing was charged; the gateway cannot tell → 504 saying the order will be
    /// settled (the reconciler takes it once its hold ends). When the charge was decided but its
    /// result cannot be recorded (the store just became unavailable), 202 with the order as it
    /// stands: it is stored and charged-or-declined, and the reconciler records the outcome.
    @Sendable func placeSync(_ request: Request, context: Context) async throws -> Response {
        let timeout = syncTimeout
        let deadline = ContinuousClock.now + timeout
        var order = try await OrderIntake.newOrder(from: request, context: context, channel: .sync)
        // Sold out just now: told at once, not after a wait for a lane.
        if let refusal = soldOut.refusal(for: order) { throw OrderIntake.apiError(refusal) }
        let predicted = lanes.predictedWait
        if predicted > timeout {
            admission.recordShed(.checkoutLanes)
            let retryAfter = max(1, Int(predicted.asSeconds.rounded(.up)))
            throw APIError(.serviceUnavailable, code: "overloaded",
                           message: await refusedBeforePlacing(order, "checkout lanes are full: the predicted wait of \(predicted.shortDescription) exceeds the \(timeout.shortDescription) limit"),
                           headers: [.retryAfter: "\(retryAfter)"])
        }
        // Answer a little before the deadline (settling and storing the result take a moment),
        // and start no charge without a margin of time left to wait for its answer.
        let margin = min(SyncLimits.answerMargin, timeout / 10)
        let chargeDeadline = deadline - margin
        let laneWait = chargeDeadline - margin - ContinuousClock.now
        guard laneWait > .zero, await lanes.enter(timeout: laneWait) else {
            throw APIError(.gatewayTimeout, code: "timeout",
                           message: await refusedBeforePlacing(order, "no checkout lane freed up within \(timeout.shortDescription)"))
        }
        var serviceTime: Duration?
        defer { lanes.leave(serviceTime: serviceTime) }
        // Until the deadline (and a grace for this request's own settlement) the order is this
        // request's; after it, the reconciler's.
        let holdUntil = WallClock.nowMillis() + (deadline - ContinuousClock.now).asMilliseconds + SyncLimits.holdGrace.asMilliseconds
        // Placed in time to leave the charge its margin, or not at all.
        order.admitBy = min(admission.deadlineFromNow(), chargeDeadline - margin)
        let placement = try await OrderIntake.place(order, store: store, soldOut: soldOut) { try await $0.placeImmediate($1, holdUntil: holdUntil) }
        if placement.created { orderMetrics.recordAccepted(.sync) }
        guard placement.created else {
            if placement.order.status.isTerminal { return Response.json(.ok, OrderJSON.order(placement.order), headers: OrderIntake.headers(for: placement)) }
            throw APIError(.conflict, code: "request_in_progress",
                           message: "order '\(placement.order.id)' of this idempotency key is not finished yet: its charge is in progress or its outcome is being settled; ask again shortly",
                           headers: [.retryAfter: "1"])
        }
        let started = ContinuousClock.now
        let charged = await charge(placement.order, before: chargeDeadline)
        serviceTime = ContinuousClock.now - started
        if case let .decided(outcome) = charged {
            let result = OrderResult(outcome, voided: "payment voided: the order was settled as never charged")
            let finished: Order
            do {
                finished = try await store.finish(placement.order.id, result: result) ?? placement.order
            } catch {
                // The charge is decided and the order stored; only its result is not recorded yet.
                // A 503 here ("not acknowledged, repeat") would be untrue, and a repeat without a
                // key would charge again: the order is accepted as it stands, and the reconciler
                // finishes it by the gateway's answer once the request's hold ends.
                context.logger.warning("a sync order's charge was decided but its result could not be recorded; the reconciler will",
                               metadata: ["order_id": "\(placement.order.id)", "error": "\(error)"])
                return Response.json(.accepted, OrderJSON.order(placement.order))
            }
            processed.record()
            orderMetrics.recordFinished(result, by: .sync)
            return Response.json(.ok, OrderJSON.order(finished))
        }
        return try await settleUnanswered(placement.order, charged)
    }

    /// What came of the sync endpoint's charge.
    enum SyncCharge: Sendable {
        /// The gateway answered.
        case decided(PaymentOutcome)
        /// It kept failing (transiently or otherwise) until the deadline; the last error.
        case gaveUp(String)
        /// The deadline passed first.
        case timedOut
    }

    /// Charges with quick retries on transient errors (the customer is waiting), until `deadline`.
    private func charge(_ order: Order, before deadline: ContinuousClock.Instant) async -> SyncCharge {
        await withTaskGroup(of: SyncCharge?.self) { group in
            group.addTask {
                var lastError = "payment gateway unavailable"
                for attempt in 0..<3 {
                    // Past the deadline (cancelled), no new attempt may start.
                    if Task.isCancelled { return nil }
                    do {
                        return .decided(try await gateway.charge(orderID: order.id, amount: order.total))
                    } catch is CancellationError {
                        return nil
                    } catch is PaymentNotSent {
                        return nil
                    } catch {
                        lastError = "\(error)"
                        do { try await Task.sleep(for: .milliseconds(50 << attempt)) } catch { return nil }
                    }
                }
                return .gaveUp(lastError)
            }
            group.addTask {
                try? await Task.sleep(until: deadline, clock: .continuous)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? .timedOut
        }
    }

    /// What a sync request refused before placing its order may say of the charge. "Nothing was
    /// charged" only when the request cannot name an order placed before (no order id or key of
    /// the client's): a repeat whose first request's charge is still out was told so, and was
    /// then charged (found by `flashsale chaos`). A repeat is told that this request charged
    /// nothing, and what is known of the order.
    private func refusedBeforePlacing(_ order: NewOrder, _ why: String) async -> String {
        guard order.idChosenByClient || order.idempotencyKey != nil else { return "\(why); nothing was charged" }
        if order.idChosenByClient, let earlier = try? await store.order(id: order.id) {
            return "\(why); this request placed and charged nothing, but order '\(order.id)' was placed by an earlier request and is "
                + "\(earlier.status.rawValue) (GET /orders/\(order.id))"
        }
        return "\(why); this request placed and charged nothing (an earlier request with the same order id or Idempotency-Key may "
            + "have placed the order: repeat it, or GET /orders/{id})"
    }

    /// The charge did not come back with an answer: settle the order by the rule, then answer.
    private func settleUnanswered(_ order: Order, _ charged: SyncCharge) async throws -> Response {
        let limit = syncTimeout.shortDescription
        let what = if case let .gaveUp(error) = charged { "the payment gateway kept failing (\(error))" } else {
            "the payment gateway did not answer within the \(limit) limit"
        }
        let settlement: OrderSettler.Settlement
        do {
            // The customer has waited their limit: the gateway gets a short while to say.
            let settler = OrderSettler(store: store, gateway: gateway, gatewayTimeout: SyncLimits.settleTimeout)
            settlement = try await settler.settle(order.id, why: "payment not completed: \(what)", counted: false,
                                                  by: "the sync request, at its deadline")
        } catch {
            throw APIError(.gatewayTimeout, code: "timeout",
                           message: "\(what), and it cannot tell yet whether order '\(order.id)' was charged; the order will be settled by that answer (GET /orders/\(order.id))")
        }
        switch settlement {
        case let .settled(stored), let .alreadyFinal(stored):
            if case .settled = settlement {
                processed.record()
                orderMetrics.recordFinished(stored.status, by: .sync)
            }
            if stored.status == .completed { return Response.json(.ok, OrderJSON.order(stored)) }
            throw APIError(.gatewayTimeout, code: "timeout",
                           message: "\(what); order '\(order.id)' failed and nothing was charged")
        case .notFound:
            throw APIError(.internalServerError, code: "internal_error", message: "order '\(order.id)' disappeared")
        }
    }

    // MARK: Lookup

    /// `GET /admin/orders?status=…&limit=…&before=…`: orders newest first, by state, a page at a
    /// time (`next` is the `before` of the next page). Admin: it lists every customer's orders.
    @Sendable func browse(_ request: Request, context: Context) async throws -> Response {
        let query = request.uri.queryParameters
        var status: OrderStatus?
        if let text = query.get("status"), !text.isEmpty {
            guard let parsed = OrderStatus(rawValue: text) else {
                throw APIError.badRequest("invalid_status", "status must be pending, processing, completed or failed, not '\(text)'")
            }
            status = parsed
        }
        let limit = try request.limit(default: 50, range: 1...500)
        var cursor: Int64?
        if let text = query.get("before") {
            guard let number = Int64(text), number >= 0 else {
                throw APIError.badRequest("invalid_cursor", "before must be the 'next' of an earlier page, not '\(text)'")
            }
            cursor = number
        }
        let page = try await store.orders(status: status, before: cursor, limit: limit)
        let next = page.next.map { JSONText.quoted(String($0)) } ?? "null"
        return Response.json(.ok, #"{"orders":[\#(page.orders.map { OrderJSON.order($0) }.joined(separator: ","))],"next":\#(next)}"#)
    }

    /// `GET /admin/orders/{id}/history`: the order's life, oldest first (``Order/history(with:)``):
    /// placed, its first attempt, each failed attempt with the gateway's error, its message
    /// dead-lettered or redriven, and who finished it and why. Admin: it shows operators'
    /// addresses and the gateway's errors.
    @Sendable func history(_ request: Request, context: Context) async throws -> Response {
        let id = try context.parameters.decoded("id")
        guard let order = try await store.order(id: id) else { throw APIError.notFound("no order with id '\(id)'") }
        let events = try await store.events(of: id, limit: Self.historyLimit)
        let entries = order.history(with: events).map { entry in
            #"{"at":\#(entry.at),"kind":\#(JSONText.quoted(entry.kind)),"detail":\#(JSONText.quoted(entry.detail)),"by":\#(entry.actor.map(JSONText.quoted) ?? "null")}"#
        }
        let failed = events.count { $0.kind == .attemptFailed }
        // The last attempt was answered when a charge, not a settlement, finished the order.
        let answered = order.status.isTerminal && !events.contains { $0.kind == .settled } ? 1 : 0
        return Response.json(.ok, """
            {"order_id":\(JSONText.quoted(order.id)),"status":\(JSONText.quoted(order.status.rawValue)),"attempts":\(order.attempts),\
            "failed_attempts":\(failed),"unanswered_attempts":\(max(0, order.attempts - failed - answered)),\
            "history":[\(entries.joined(separator: ","))]}
            """)
    }

    /// Recorded events one history shows at most (an order has a few: one per failed attempt,
    /// bounded by the queue's receives, and one per dead-lettering, redrive and settlement).
    static var historyLimit: Int { 500 }

    @Sendable func show(_ request: Request, context: Context) async throws -> Response {
        let id = try context.parameters.decoded("id")
        guard let order = try await store.order(id: id) else {
            throw APIError.notFound("no order with id '\(id)'")
        }
        guard order.status == .pending else { return Response.json(.ok, OrderJSON.order(order)) }
        // An estimate: when the queue cannot say (SQS unreachable), the order is shown without it.
        let position = try? await store.queuePosition(of: order)
        var eta: Int64?
        // Paused: no charge starts until someone resumes, so no completion can be promised.
        let paused = (try? await withTimeout(.seconds(1)) { [membership, store] in
            try await membership.pauses.state(of: store.paymentsQueue.name).paused
        }) ?? false
        if !paused, let position, let rate = processingRate, rate > 0 {
            eta = WallClock.nowMillis() + Int64((Double(position + 1) / rate * 1000).rounded())
        }
        return Response.json(.ok, OrderJSON.order(order, queuePosition: position, estimatedCompletionMillis: eta))
    }

    /// Orders per second the fleet's workers finish (at the last heartbeat): measured, or
    /// W / latency before any were measured.
    private var processingRate: Double? {
        let fleet = membership.lastSeenFleet
        let measured = fleet.reduce(0) { $0 + $1.processedPerSecond }
        if measured > 0 { return measured }
        let workers = fleet.reduce(0) { $0 + $1.workers }
        let latency = gateway.expectedLatency.asSeconds
        return workers > 0 && latency > 0 ? Double(workers) / latency : nil
    }
}

/// The sync endpoint's time budget.
enum SyncLimits {
    /// How long after the sync deadline the reconciler leaves an open sync order alone.
    static let holdGrace: Duration = .seconds(2)
    /// How long before the deadline the charge is given up, to answer in time (at most a tenth
    /// of the timeout); a lane is not taken with less than twice this left.
    static let answerMargin: Duration = .milliseconds(200)
    /// How long the gateway is given, at the deadline, to say whether an unanswered charge was made.
    static let settleTimeout: Duration = .seconds(1)
}

/// The first steps every order endpoint shares: read, validate, refuse cleanly.
enum OrderIntake {
    static let idempotencyHeader = HTTPField.Name("Idempotency-Key")!
    static let replayedHeader = HTTPField.Name("Idempotent-Replayed")!

    /// The headers of an answer about a placed order: `Location` (where its status is read),
    /// and `Idempotent-Replayed: true` when the request repeated an earlier one (its key, or
    /// its client-chosen order id) and the stored order is answered, nothing new placed.
    static func headers(for placement: Placement) -> HTTPFields {
        var fields: HTTPFields = [.location: location(of: placement.order.id)]
        if !placement.created { fields[replayedHeader] = "true" }
        return fields
    }

    /// `/orders/{id}`, the id percent-encoded (a client may choose any id without control characters).
    static func location(of orderID: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return "/orders/" + (orderID.addingPercentEncoding(withAllowedCharacters: allowed) ?? orderID)
    }


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

    /// Places a queued order, mapping refusals to their API errors.
    static func placeQueued(_ order: NewOrder, store: any OrderStore, soldOut: SoldOutMemory) async throws -> Placement {
        try await place(order, store: store, soldOut: soldOut) { try await $0.placeQueued($1) }
    }

    /// Places an order with `placing`, mapping the inventory gate's refusals to 409 and
    /// idempotency conflicts to 422 (`idempotency_mismatch`) or 409 (`order_id_conflict`). A
    /// product the store just refused as sold out is refused from memory (``SoldOutMemory``).
    static func place(_ order: NewOrder, store: any OrderStore, soldOut: SoldOutMemory,
                      _ placing: (any OrderStore, NewOrder) async throws -> Placement) async throws -> Placement {
        do {
            return try await placeRemembering(order, store: store, soldOut: soldOut, placing)
        } catch let refusal as InventoryRefusal {
            throw apiError(refusal)
        } catch let conflict as PlacementConflict {
            throw apiError(conflict)
        }
    }

    /// Places an order with `placing` unless ``SoldOutMemory`` refuses it; remembers the store's
    /// "sold out". Throws the store's errors as they are.
    static func placeRemembering(_ order: NewOrder, store: any OrderStore, soldOut: SoldOutMemory,
                                 _ placing: (any OrderStore, NewOrder) async throws -> Placement) async throws -> Placement {
        if let refusal = soldOut.refusal(for: order) { throw refusal }
        let generation = soldOut.generation
        do {
            return try await placing(store, order)
        } catch let refusal as InventoryRefusal {
            soldOut.remember(refusal, for: order, since: generation)
            throw refusal
        }
    }

    static func apiError(_ conflict: PlacementConflict) -> APIError {
        switch conflict {
        case .idempotencyMismatch: return APIError(.unprocessableContent, code: "idempotency_mismatch", message: conflict.description)
        case .orderIDTaken: return APIError(.conflict, code: "order_id_conflict", message: conflict.description)
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
