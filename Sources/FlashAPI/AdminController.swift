import FlashBackend
import FlashCore
import FlashQueue
import FlashWorkers
import Hummingbird
import Logging

/// The queues, and what an operator does to them: `GET /queues` (their settings, counts and
/// pause switch), `POST /admin/queues/{name}/pause` and `…/resume`, and
/// `POST /admin/queues/{name}/purge?confirm={name}`.
///
/// A purge drops messages that orders depend on, so it asks for confirmation (the queue's name
/// again, as `confirm`), and after purging it settles every order left without a message by the
/// rule of final states (the reconciler's pass, run at once): charged → completed, never
/// charged → voided and failed, stock released. Orders the gateway cannot answer for yet (or
/// that take longer than ``settleBudget``) are left to the reconciler's sweeps; the reply says
/// how many (`orders_unresolved`), and `settling_complete` is false when the budget ran out
/// before every open order was looked at.
///
/// Every admin action is logged at notice level with who asked (the client's address and the
/// request's id) and what it did.
struct AdminController {
    /// How long a purge request spends settling orphaned orders before leaving the rest to the sweeps.
    static let settleBudget: Duration = .seconds(20)
    /// How long `GET /queues` waits for the backend (as `/stats` does for each part).
    static let readLimit: Duration = .seconds(2)

    let paymentsQueue: any MessageQueue
    let deadLetterQueue: (any MessageQueue)?
    let reconciler: Reconciler?
    let pauses: QueuePause
    /// The payments queue's stored settings (nil: SQS keeps them).
    let settings: QueueAttributes?

    func addRoutes(to routes: inout RouteTable<FlashRequestContext>) {
        routes.on("/queues", method: .get, use: list)
        routes.on("/admin/queues/:name/pause", method: .post, admin: true, use: pause)
        routes.on("/admin/queues/:name/resume", method: .post, admin: true, use: resume)
        routes.on("/admin/queues/:name/purge", method: .post, admin: true, use: purge)
    }

    /// `GET /queues`: the payments queue and its dead-letter queue, with their settings, their
    /// messages and whether consuming is paused.
    @Sendable func list(_ request: Request, context: FlashRequestContext) async throws -> Response {
        // Bounded as /stats is: a stalled database answers 503, not a request that hangs.
        let (paymentsQueue, deadLetterQueue, pauses) = (self.paymentsQueue, self.deadLetterQueue, self.pauses)
        let (stats, state, deadStats): (QueueStatistics, QueuePause.State, QueueStatistics?)
        do {
            (stats, state, deadStats) = try await withTimeout(Self.readLimit) {
                (try await paymentsQueue.statistics(), try await pauses.state(of: paymentsQueue.name), try await deadLetterQueue?.statistics())
            }
        } catch let error as TimeoutError {
            throw BackendUnavailable(reason: "the queues could not be read within \(error.limit.shortDescription)", retryAfter: .seconds(1))
        }
        var settingsJSON = #""settings":null"#
        if let settings {
            settingsJSON = #""settings":{"visibility_timeout_seconds":\#(JSONText.number(settings.visibilityTimeout.asSeconds)),"max_receives":\#(settings.maxReceiveCount),"retention_seconds":\#(JSONText.number(settings.retention.asSeconds))}"#
        }
        var queues = [#"{"name":\#(JSONText.quoted(paymentsQueue.name)),"role":"payments",\#(settingsJSON),"paused":\#(state.paused),"paused_by":\#(state.by.map(JSONText.quoted) ?? "null"),"paused_at":\#(state.at.map(String.init) ?? "null"),"visible":\#(stats.visible),"in_flight":\#(stats.inFlight),"delayed":\#(stats.delayed),"oldest_age_seconds":\#(JSONText.number(stats.oldestAgeSeconds))}"#]
        if let deadLetterQueue, let dead = deadStats {
            queues.append(#"{"name":\#(JSONText.quoted(deadLetterQueue.name)),"role":"dead_letter","settings":null,"paused":false,"paused_by":null,"paused_at":null,"visible":\#(dead.visible),"in_flight":\#(dead.inFlight),"delayed":\#(dead.delayed),"oldest_age_seconds":\#(JSONText.number(dead.oldestAgeSeconds))}"#)
        }
        return Response.json(.ok, #"{"queues":[\#(queues.joined(separator: ","))]}"#)
    }

    @Sendable func pause(_ request: Request, context: FlashRequestContext) async throws -> Response {
        try await setPaused(true, request: request, context: context)
    }

    @Sendable func resume(_ request: Request, context: FlashRequestContext) async throws -> Response {
        try await setPaused(false, request: request, context: context)
    }

    /// Sets the fleet's switch; every pool follows it within its poll (half a second).
    private func setPaused(_ paused: Bool, request: Request, context: FlashRequestContext) async throws -> Response {
        let queue = try namedQueue(context)
        guard queue.name == paymentsQueue.name else {
            throw APIError(.conflict, code: "not_consumed",
                           message: "nothing consumes '\(queue.name)' (the dead-letter queue); only '\(paymentsQueue.name)' can be paused")
        }
        let actor = Self.actor(context)
        let state = try await pauses.set(paused, queue: queue.name, by: actor)
        context.logger.notice(paused ? "admin: consuming paused" : "admin: consuming resumed",
                              metadata: ["queue": "\(queue.name)", "actor": "\(actor)"])
        return Response.json(.ok, #"{"queue":\#(JSONText.quoted(queue.name)),"paused":\#(state.paused),"by":\#(JSONText.quoted(actor)),"at":\#(state.at ?? 0)}"#)
    }

    @Sendable func purge(_ request: Request, context: FlashRequestContext) async throws -> Response {
        let queue = try namedQueue(context)
        let before = try await queue.statistics()
        guard request.uri.queryParameters.get("confirm") == queue.name else {
            throw APIError(.conflict, code: "confirmation_required",
                           message: "purging '\(queue.name)' deletes its \(before.total) messages, and their orders are settled at once (charged: completed; not charged: failed); to go ahead, repeat with ?confirm=\(queue.name)")
        }
        var pass = Reconciler.Pass()
        do {
            if let reconciler = reconciler {
                pass = try await reconciler.purge(queue, settlingWithin: Self.settleBudget)
            } else {
                try await queue.purge()
            }
        } catch let error as PurgeInProgress {
            throw APIError(.conflict, code: "purge_in_progress", message: "\(error)",
                           headers: [.retryAfter: "\(max(1, Int(error.retryAfter.asSeconds.rounded(.up))))"])
        }
        context.logger.notice("admin: queue purged", metadata: [
            "queue": "\(queue.name)", "actor": "\(Self.actor(context))", "messages": "\(before.total)",
            "orders_completed": "\(pass.completed)", "orders_failed": "\(pass.failed)", "orders_unresolved": "\(pass.unresolved)"])
        return Response.json(.ok, """
            {"queue":\(JSONText.quoted(queue.name)),"purged":\(before.total),\
            "orders_settled":{"completed":\(pass.completed),"failed":\(pass.failed)},"orders_unresolved":\(pass.unresolved),\
            "settling_complete":\(reconciler == nil ? false : pass.complete)}
            """)
    }

    private func namedQueue(_ context: FlashRequestContext) throws -> any MessageQueue {
        let name = try context.parameters.decoded("name")
        let queues = [paymentsQueue] + (deadLetterQueue.map { [$0] } ?? [])
        guard let queue = queues.first(where: { $0.name == name }) else {
            throw APIError.notFound("no queue named '\(name)'; queues: \(queues.map(\.name).joined(separator: ", "))")
        }
        return queue
    }

    /// Who asked, for the log and the stored switch: every holder of the admin secret is the
    /// same principal, so the client's address and the request's id tell them apart.
    static func actor(_ context: FlashRequestContext) -> String {
        let address = context.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown"
        let id = context.logger[metadataKey: "hb.request.id"].map { "\($0)" } ?? context.id
        return "\(address) request \(id)"
    }
}
