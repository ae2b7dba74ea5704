import FlashCore
import FlashQueue
import Hummingbird

/// Admin operations on the queues: `POST /admin/queues/{name}/purge`.
struct AdminController {
    let services: FlashServices

    func addRoutes(to routes: inout RouteTable<FlashRequestContext>) {
        routes.on("/admin/queues/:name/purge", method: .post, use: purge)
    }

    @Sendable func purge(_ request: Request, context: FlashRequestContext) async throws -> Response {
        try services.admin.authorize(request, remoteAddress: context.remoteAddress)
        let name = try context.parameters.require("name")
        let queues = [services.paymentsQueue] + (services.deadLetterQueue.map { [$0] } ?? [])
        guard let queue = queues.first(where: { $0.name == name }) else {
            throw APIError.notFound("no queue named '\(name)'; queues: \(queues.map(\.name).joined(separator: ", "))")
        }
        let before = try await queue.statistics()
        try await queue.purge()
        return Response.json(.ok, #"{"queue":\#(JSONText.quoted(name)),"purged":\#(before.total)}"#)
    }
}
