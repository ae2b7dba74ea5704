import Foundation
import HTTPTypes
import Hummingbird
import ServiceLifecycle

/// `GET /dashboard` (the page, built into the binary: `Resources/dashboard.html`, nothing
/// fetched from elsewhere) and `GET /dashboard/events` (its Server-Sent Events: a `history`
/// event, then a `snapshot` every second, from ``DashboardFeed``, or a `ping` when the backend
/// could not be read that second).
struct DashboardController<Context: RequestContext> {
    let feed: DashboardFeed

    func addRoutes(to routes: inout RouteTable<Context>) {
        routes.on("/dashboard", method: .get, use: page)
        routes.on("/dashboard/events", method: .get, use: events)
    }

    @Sendable func page(_ request: Request, context: Context) async throws -> Response {
        Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
                 body: .init(byteBuffer: ByteBuffer(bytes: PackageResources.dashboard_html)))
    }

    @Sendable func events(_ request: Request, context: Context) async throws -> Response {
        guard let subscription = feed.subscribe() else {
            throw APIError(.serviceUnavailable, code: "too_many_viewers",
                           message: "\(feed.configuration.maxViewers) dashboards are open on this process; try again later or another process",
                           headers: [.retryAfter: "10"])
        }
        var headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-store"]
        // Proxies (nginx) must pass each event on at once.
        headers[HTTPField.Name("X-Accel-Buffering")!] = "no"
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            // `retry`: how soon the browser reconnects when the stream breaks (a restart).
            try await writer.write(ByteBuffer(string: "retry: 1000\nevent: history\ndata: \(subscription.history)\n\n"))
            // The stream ends with the server's graceful shutdown (else shutdown would wait for
            // every open dashboard), or when the feed stops, or when the page goes away.
            try await withGracefulShutdownHandler {
                for await snapshot in subscription.snapshots {
                    let event = snapshot == DashboardFeed.keepAlive ? "event: ping\ndata: {}\n\n" : "event: snapshot\ndata: \(snapshot)\n\n"
                    try await writer.write(ByteBuffer(string: event))
                }
            } onGracefulShutdown: {
                subscription.end()
            }
            try await writer.finish(nil)
        })
    }
}
