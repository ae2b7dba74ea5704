import FlashCore
import FlashOrders
import FlashQueue
import FlashWorkers
import Hummingbird
import Logging

/// The dead-letter queue, and what an operator does with it (admin routes):
/// - `GET /admin/dead-letters?limit=`: its messages, oldest first, each with its order as stored
///   and, for an open order, when its hold ends (``Reconciler/Configuration/deadLetterHold``).
/// - `POST /admin/dead-letters/{message_id}/redrive`: retry one: back to the payments queue,
///   visible at once, receive count reset, its order `pending` again.
/// - `POST /admin/dead-letters/{message_id}/settle`: settle its order now by the rule of final
///   states (charged → completed; never charged → voided and failed).
/// - `POST /admin/dead-letters/redrive?confirm={queue}` and `…/settle?confirm={queue}`: the
///   same for every dead letter whose order is open (up to ``bulkLimit``), after confirmation.
///
/// A dead letter whose order is finished is left alone by both (there is nothing to charge or
/// settle): a redrive answers 409. Only a backend that can see its dead-letter queue without
/// receiving from it lists and moves messages (the embedded store and PostgreSQL); on SQS these
/// routes answer 501 and say what to use instead.
struct DeadLettersController {
    /// Dead letters one bulk action (or one look-up by id) reads at most.
    static let bulkLimit = 10_000
    /// How long a bulk settle spends before leaving the rest to a repeat (or the hold's end).
    static let settleBudget: Duration = .seconds(20)

    let store: any OrderStore
    let deadLetterQueue: (any MessageQueue)?
    let reconciler: Reconciler?

    func addRoutes(to routes: inout RouteTable<FlashRequestContext>) {
        routes.on("/admin/dead-letters", method: .get, admin: true, use: list)
        routes.on("/admin/dead-letters/redrive", method: .post, admin: true, use: redriveAll)
        routes.on("/admin/dead-letters/settle", method: .post, admin: true, use: settleAll)
        routes.on("/admin/dead-letters/:id/redrive", method: .post, admin: true, use: redriveOne)
        routes.on("/admin/dead-letters/:id/settle", method: .post, admin: true, use: settleOne)
    }

    private var hold: Duration { reconciler?.configuration.deadLetterHold ?? .zero }

    @Sendable func list(_ request: Request, context: FlashRequestContext) async throws -> Response {
        var limit = 100
        if let text = request.uri.queryParameters.get("limit") {
            guard let number = Int(text), (1...1000).contains(number) else {
                throw APIError.badRequest("invalid_limit", "limit must be a whole number from 1 to 1000, not '\(text)'")
            }
            limit = number
        }
        let letters = try await read(limit: limit + 1)
        let total = try await deadLetterQueue?.statistics().total ?? 0
        let shown = letters.prefix(limit).map(letterJSON).joined(separator: ",")
        return Response.json(.ok, """
            {"queue":\(deadLetterQueue.map { JSONText.quoted($0.name) } ?? "null"),"hold_seconds":\(JSONText.number(hold.asSeconds)),\
            "total":\(max(total, letters.count)),"more":\(letters.count > limit),"dead_letters":[\(shown)]}
            """)
    }

    @Sendable func redriveOne(_ request: Request, context: FlashRequestContext) async throws -> Response {
        let id = try context.parameters.decoded("id")
        let outcome = try await unsupportedAsError { try await store.redrive([id]) }.first ?? .notFound
        switch outcome {
        case let .redriven(order):
            context.logger.notice("admin: dead letter redriven", metadata: [
                "message_id": "\(id)", "order_id": "\(order.id)", "actor": "\(AdminController.actor(context))"])
            return Response.json(.ok, #"{"message_id":\#(JSONText.quoted(id)),"redriven":true,"order":\#(OrderJSON.order(order))}"#)
        case let .orderFinal(order):
            throw APIError(.conflict, code: "order_final",
                           message: "order '\(order.id)' is already \(order.status.rawValue)\(order.failureReason.map { " (\($0))" } ?? ""); a redrive would charge nothing, so the message stays in the dead-letter queue")
        case .notFound:
            throw APIError.notFound("no dead letter with message id '\(id)' (redriven already, or purged)")
        }
    }

    @Sendable func settleOne(_ request: Request, context: FlashRequestContext) async throws -> Response {
        let id = try context.parameters.decoded("id")
        guard let letter = try await read(limit: Self.bulkLimit).first(where: { $0.messageID == id }) else {
            throw APIError.notFound("no dead letter with message id '\(id)' among the first \(Self.bulkLimit) (redriven already, or purged)")
        }
        guard let orderID = letter.orderID else {
            throw APIError(.conflict, code: "no_order", message: "dead letter '\(id)' names no order; there is nothing to settle")
        }
        guard let reconciler else { throw APIError(.conflict, code: "no_reconciler", message: "this process settles no orders") }
        let actor = AdminController.actor(context)
        let settlement: OrderSettler.Settlement
        do {
            settlement = try await reconciler.settleNow(orderID, by: actor)
        } catch {
            throw APIError(.serviceUnavailable, code: "gateway_unavailable",
                           message: "the payment gateway could not say whether order '\(orderID)' was charged (\(error)); the order is unchanged, try again",
                           headers: [.retryAfter: "5"])
        }
        switch settlement {
        case let .settled(order), let .alreadyFinal(order):
            let changed = if case .settled = settlement { true } else { false }
            if changed {
                context.logger.notice("admin: dead letter's order settled", metadata: [
                    "message_id": "\(id)", "order_id": "\(orderID)", "status": "\(order.status.rawValue)", "actor": "\(actor)"])
            }
            return Response.json(.ok, #"{"message_id":\#(JSONText.quoted(id)),"settled":\#(changed),"order":\#(OrderJSON.order(order))}"#)
        case .notFound:
            throw APIError.notFound("dead letter '\(id)' names order '\(orderID)', which does not exist")
        }
    }

    @Sendable func redriveAll(_ request: Request, context: FlashRequestContext) async throws -> Response {
        let open = try await confirmedOpenLetters(request, action: "redriving", effect: "go back to the payments queue to be charged")
        var redriven = 0, final = 0, gone = 0
        for start in stride(from: 0, to: open.count, by: 100) {
            let chunk = open[start..<min(start + 100, open.count)].map(\.messageID)
            for outcome in try await store.redrive(chunk) {
                switch outcome {
                case .redriven: redriven += 1
                case .orderFinal: final += 1
                case .notFound: gone += 1
                }
            }
        }
        context.logger.notice("admin: dead letters redriven", metadata: [
            "redriven": "\(redriven)", "actor": "\(AdminController.actor(context))"])
        return Response.json(.ok, #"{"redriven":\#(redriven),"skipped_final":\#(final),"skipped_gone":\#(gone)}"#)
    }

    @Sendable func settleAll(_ request: Request, context: FlashRequestContext) async throws -> Response {
        guard let reconciler else { throw APIError(.conflict, code: "no_reconciler", message: "this process settles no orders") }
        let open = try await confirmedOpenLetters(request, action: "settling", effect: "be settled now (charged: completed; not charged: voided and failed)")
        let actor = AdminController.actor(context)
        let deadline = ContinuousClock.now + Self.settleBudget
        var completed = 0, failed = 0, unresolved = 0
        await withTaskGroup(of: OrderStatus?.self) { group in
            var started = 0
            func record(_ status: OrderStatus??) {
                switch status {
                case .some(.some(.completed)): completed += 1
                case .some(.some(.failed)): failed += 1
                case .some(.some): break
                case .some(.none), .none: unresolved += 1
                }
            }
            for letter in open {
                guard let orderID = letter.orderID else { continue }
                if started >= 16 { record(await group.next()) }
                started += 1
                group.addTask {
                    guard ContinuousClock.now < deadline else { return nil }
                    guard case let .settled(order)? = try? await reconciler.settleNow(orderID, by: actor) else { return nil }
                    return order.status
                }
            }
            for await status in group { record(status) }
        }
        context.logger.notice("admin: dead letters' orders settled", metadata: [
            "completed": "\(completed)", "failed": "\(failed)", "unresolved": "\(unresolved)", "actor": "\(actor)"])
        return Response.json(.ok, #"{"settled":{"completed":\#(completed),"failed":\#(failed)},"unresolved":\#(unresolved)}"#)
    }

    // MARK: Helpers

    /// The dead letters whose orders are open, after checking the bulk action was confirmed
    /// with the dead-letter queue's name (409 saying how many it would touch, otherwise).
    private func confirmedOpenLetters(_ request: Request, action: String, effect: String) async throws -> [DeadLetter] {
        guard let name = deadLetterQueue?.name else { throw APIError.notFound("the payments queue has no dead-letter queue") }
        let open = try await read(limit: Self.bulkLimit).filter { $0.order.map { !$0.status.isTerminal } ?? false }
        guard request.uri.queryParameters.get("confirm") == name else {
            throw APIError(.conflict, code: "confirmation_required",
                           message: "\(action) the dead letters: the \(open.count) whose orders are open would \(effect); to go ahead, repeat with ?confirm=\(name)")
        }
        return open
    }

    private func read(limit: Int) async throws -> [DeadLetter] {
        try await unsupportedAsError { try await store.deadLetters(limit: limit) }
    }

    private func unsupportedAsError<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as DeadLettersUnsupported {
            throw APIError(.notImplemented, code: "not_supported", message: error.description)
        }
    }

    private func letterJSON(_ letter: DeadLetter) -> String {
        var heldUntil = "null"
        if hold > .zero, let order = letter.order, !order.status.isTerminal {
            heldUntil = String(order.updatedAt + hold.asMilliseconds)
        }
        return """
            {"message_id":\(JSONText.quoted(letter.messageID)),"order_id":\(letter.orderID.map(JSONText.quoted) ?? "null"),\
            "receive_count":\(letter.receiveCount),"sent_at":\(letter.sentAt),"hidden_until":\(letter.hiddenUntil),\
            "held_until":\(heldUntil),"order":\(letter.order.map { OrderJSON.order($0) } ?? "null")}
            """
    }
}
