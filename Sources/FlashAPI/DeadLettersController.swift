import FlashCore
import FlashOrders
import FlashQueue
import FlashWorkers
import Hummingbird
import Logging

/// The dead-letter queue, and what an operator does with it (admin routes):
/// - `GET /admin/dead-letters?limit=&state=`: its messages, oldest first, each with its order as
///   stored and, for an open order, when its hold ends (``Reconciler/Configuration/deadLetterHold``);
///   `state=open`: only those whose order is open (what an operator can act on).
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
        let limit = try request.limit(default: 100, range: 1...1000)
        let state = request.uri.queryParameters.get("state") ?? "all"
        guard state == "all" || state == "open" else {
            throw APIError.badRequest("invalid_state", "state must be open (only dead letters whose order is open) or all, not '\(state)'")
        }
        let letters = try await read(limit: limit + 1, openOnly: state == "open")
        let total = try await deadLetterQueue?.statistics().total ?? 0
        let shown = letters.prefix(limit).map(letterJSON).joined(separator: ",")
        return Response.json(.ok, """
            {"queue":\(deadLetterQueue.map { JSONText.quoted($0.name) } ?? "null"),"hold_seconds":\(JSONText.number(hold.asSeconds)),\
            "total":\(total),"more":\(letters.count > limit),"dead_letters":[\(shown)]}
            """)
    }

    @Sendable func redriveOne(_ request: Request, context: FlashRequestContext) async throws -> Response {
        let id = try context.parameters.decoded("id")
        if let order = try await unsupportedAsError({ try await store.deadLetter(messageID: id) })?.order, let refusal = redriveRefusal(order) {
            throw refusal
        }
        let outcome = try await unsupportedAsError { try await store.redrive([id], by: "an operator (\(AdminController.actor(context)))") }.first ?? .notFound
        switch outcome {
        case let .redriven(order):
            context.logger.notice("admin: dead letter redriven", metadata: [
                "message_id": "\(id)", "order_id": "\(order.id)", "actor": "\(AdminController.actor(context))"])
            return Response.json(.ok, #"{"message_id":\#(JSONText.quoted(id)),"redriven":true,"order":\#(OrderJSON.order(order))}"#)
        case let .orderFinal(order):
            throw APIError(.conflict, code: "order_final",
                           message: "order '\(order.id)' is already \(order.status.rawValue)\(order.failureReason.map { " (\($0))" } ?? ""); a redrive would charge nothing, so the message stays in the dead-letter queue")
        case .notFound:
            if try await unsupportedAsError({ try await store.deadLetter(messageID: id) }) != nil {
                throw APIError(.conflict, code: "no_order", message: "dead letter '\(id)' names no stored order; there is nothing to charge")
            }
            throw APIError.notFound("no dead letter with message id '\(id)' (redriven already, or purged)")
        }
    }

    @Sendable func settleOne(_ request: Request, context: FlashRequestContext) async throws -> Response {
        let id = try context.parameters.decoded("id")
        guard let letter = try await unsupportedAsError({ try await store.deadLetter(messageID: id) }) else {
            throw APIError.notFound("no dead letter with message id '\(id)' (redriven already, or purged)")
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
            // The gateway could not say whether it was charged, or the store did not take the
            // result: either way nothing was stored.
            throw APIError(.serviceUnavailable, code: "not_settled",
                           message: "order '\(orderID)' could not be settled now (\(error)); it is unchanged, try again",
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
        let letters = try await confirmedOpenLetters(request, action: "redriving", effect: "go back to the payments queue to be charged")
        // Only those whose hold leaves time (the rest are being settled, or will be at once).
        let open = letters.filter { letter in letter.order.map { redriveRefusal($0) == nil } ?? false }
        let settling = letters.count - open.count
        var redriven = 0, final = 0, gone = 0
        for start in stride(from: 0, to: open.count, by: 100) {
            let chunk = open[start..<min(start + 100, open.count)].map(\.messageID)
            let outcomes: [RedriveOutcome]
            do {
                outcomes = try await store.redrive(chunk, by: "an operator (\(AdminController.actor(context)))")
            } catch {
                // Each chunk is its own transaction: say what is done, so a repeat goes on from there.
                throw APIError(.serviceUnavailable, code: "redrive_interrupted",
                               message: "redrove \(redriven) dead letters, then the store failed (\(error)); the rest are where they were: repeat to go on",
                               headers: [.retryAfter: "5"])
            }
            for outcome in outcomes {
                switch outcome {
                case .redriven: redriven += 1
                case .orderFinal: final += 1
                case .notFound: gone += 1
                }
            }
        }
        context.logger.notice("admin: dead letters redriven", metadata: [
            "redriven": "\(redriven)", "actor": "\(AdminController.actor(context))"])
        return Response.json(.ok, #"{"redriven":\#(redriven),"skipped_final":\#(final),"skipped_gone":\#(gone),"skipped_settling":\#(settling)}"#)
    }

    @Sendable func settleAll(_ request: Request, context: FlashRequestContext) async throws -> Response {
        guard let reconciler else { throw APIError(.conflict, code: "no_reconciler", message: "this process settles no orders") }
        let open = try await confirmedOpenLetters(request, action: "settling", effect: "be settled now (charged: completed; not charged: voided and failed)")
        let actor = AdminController.actor(context)
        let deadline = ContinuousClock.now + Self.settleBudget
        var completed = 0, failed = 0, unresolved = 0, skipped = 0
        /// What one settlement came to: settled as, finished by someone else meanwhile, or not settled.
        enum Ended: Sendable { case settled(OrderStatus), skipped, unresolved }
        await withTaskGroup(of: Ended.self) { group in
            var started = 0
            func record(_ ended: Ended?) {
                switch ended {
                case .settled(.completed): completed += 1
                case .settled: failed += 1
                case .skipped: skipped += 1
                case .unresolved, nil: unresolved += 1
                }
            }
            for letter in open {
                guard let orderID = letter.orderID else { continue }
                if started >= 16 { record(await group.next()) }
                started += 1
                group.addTask {
                    // Past the budget: left as it is (the hold's end or a repeat settles it).
                    guard ContinuousClock.now < deadline else { return .unresolved }
                    switch try? await reconciler.settleNow(orderID, by: actor) {
                    case let .settled(order)?: return .settled(order.status)
                    case .alreadyFinal?, .notFound?: return .skipped
                    case nil: return .unresolved
                    }
                }
            }
            for await ended in group { record(ended) }
        }
        context.logger.notice("admin: dead letters' orders settled", metadata: [
            "completed": "\(completed)", "failed": "\(failed)", "unresolved": "\(unresolved)", "actor": "\(actor)"])
        return Response.json(.ok, #"{"settled":{"completed":\#(completed),"failed":\#(failed)},"skipped_final":\#(skipped),"unresolved":\#(unresolved)}"#)
    }

    // MARK: Helpers

    /// Time a redrive must leave before the hold ends: the reconciler settles the order once it
    /// has (its gateway call takes up to 10 s), and a redrive must not race that settlement.
    static let redriveMargin: Duration = .seconds(15)

    /// Why this dead letter's open order may not be sent back now, if so: it is being settled,
    /// or will be at once (no hold, or its hold ends within ``redriveMargin``). A redrive that
    /// raced the settlement would answer "pending" for an order that ends failed.
    private func redriveRefusal(_ order: Order) -> APIError? {
        guard !order.status.isTerminal else { return nil }  // the store answers order_final
        guard hold > .zero else {
            return APIError(.conflict, code: "not_held",
                            message: "order '\(order.id)' is settled by the reconciler as soon as its message is dead-lettered (--dead-letter-hold is 0): it cannot be sent back safely; start every process with --dead-letter-hold to retry dead letters")
        }
        guard let since = order.deadLetteredAt else { return nil }  // not found yet: its hold starts when it is
        let ends = since + hold.asMilliseconds
        guard ends - WallClock.nowMillis() >= Self.redriveMargin.asMilliseconds else {
            return APIError(.conflict, code: "hold_ended",
                            message: "order '\(order.id)''s hold ends within \(Self.redriveMargin.shortDescription) or has ended: the reconciler is settling it")
        }
        return nil
    }

    /// The dead letters whose orders are open, after checking the bulk action was confirmed
    /// with the dead-letter queue's name (409 saying how many it would touch, otherwise).
    private func confirmedOpenLetters(_ request: Request, action: String, effect: String) async throws -> [DeadLetter] {
        guard let name = deadLetterQueue?.name else { throw APIError.notFound("the payments queue has no dead-letter queue") }
        let open = try await read(limit: Self.bulkLimit, openOnly: true)
        guard request.uri.queryParameters.get("confirm") == name else {
            throw APIError(.conflict, code: "confirmation_required",
                           message: "\(action) the dead letters: the \(open.count) whose orders are open would \(effect); to go ahead, repeat with ?confirm=\(name)")
        }
        return open
    }

    private func read(limit: Int, openOnly: Bool) async throws -> [DeadLetter] {
        try await unsupportedAsError { try await store.deadLetters(limit: limit, openOnly: openOnly) }
    }

    private func unsupportedAsError<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as DeadLettersUnsupported {
            throw APIError(.notImplemented, code: "not_supported", message: error.description)
        }
    }

    private func letterJSON(_ letter: DeadLetter) -> String {
        // Only while it lasts (an ended hold is the reconciler's to settle at its next look).
        let heldUntil = letter.order.flatMap { order in reconciler?.holdEnd(of: order) }.map(String.init) ?? "null"
        return """
            {"message_id":\(JSONText.quoted(letter.messageID)),"order_id":\(letter.orderID.map(JSONText.quoted) ?? "null"),\
            "receive_count":\(letter.receiveCount),"sent_at":\(letter.sentAt),"hidden_until":\(letter.hiddenUntil),\
            "held_until":\(heldUntil),"order":\(letter.order.map { OrderJSON.order($0) } ?? "null")}
            """
    }
}
