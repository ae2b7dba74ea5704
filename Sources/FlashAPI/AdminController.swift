import FlashCore
import FlashQueue
import FlashWorkers
import Hummingbird

/// Admin operations on the queues: `POST /admin/queues/{name}/purge`.
///
/// A purge drops messages that orders depend on. So, after purging, it settles every order
/// left without a message by the rule of final states (the reconciler's pass, run at once):
/// charged → completed, never charged → voided and failed, stock released. Orders the gateway
/// cannot answer for yet (or that take longer than ``settleBudget``) are left to the
/// reconciler's sweeps; the reply says how many (`orders_unresolved`), and `settling_complete`
/// is false when the budget ran out before every open order was looked at.
struct AdminController {
    /// How long a purge request spends settling orphaned orders before leaving the rest to the sweeps.
    static let settleBudget: Duration = .seconds(20)

    let paymentsQueue: any MessageQueue
    let deadLetterQueue: (any MessageQueue)?
    let reconciler: Reconciler?

    func addRoutes(to routes: inout RouteTable<FlashRequestContext>) {
        routes.on("/admin/queues/:name/purge", method: .post, admin: true, use: purge)
    }

    @Sendable func purge(_ request: Request, context: FlashRequestContext) async throws -> Response {
        let name = try context.parameters.decoded("name")
        let queues = [paymentsQueue] + (deadLetterQueue.map { [$0] } ?? [])
        guard let queue = queues.first(where: { $0.name == name }) else {
            throw APIError.notFound("no queue named '\(name)'; queues: \(queues.map(\.name).joined(separator: ", "))")
        }
        let before = try await queue.statistics()
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
        return Response.json(.ok, """
            {"queue":\(JSONText.quoted(name)),"purged":\(before.total),\
            "orders_settled":{"completed":\(pass.completed),"failed":\(pass.failed)},"orders_unresolved":\(pass.unresolved),\
            "settling_complete":\(reconciler == nil ? false : pass.complete)}
            """)
    }
}
