import FlashCore
import Hummingbird
import NIOCore

/// The admin check, once for every admin route (they are one route group behind it).
struct AdminMiddleware: RouterMiddleware {
    let policy: AdminPolicy

    func handle(_ request: Request, context: FlashRequestContext,
                next: (Request, FlashRequestContext) async throws -> Response) async throws -> Response {
        try policy.authorize(request)
        return try await next(request, context)
    }
}

extension AdminPolicy {
    /// Checks an admin request: `Authorization: Bearer <secret>` (401 when missing, 403 when
    /// wrong), from any address.
    func authorize(_ request: Request) throws {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw APIError(.unauthorized, code: "unauthorized",
                           message: "admin routes need an 'Authorization: Bearer <admin token>' header (the token is in flashsale.admin-token beside the database file, unless FLASHSALE_ADMIN_TOKEN or --admin-token-file set it)",
                           headers: [.wwwAuthenticate: "Bearer"])
        }
        guard SecretComparison.equal(String(header.dropFirst("Bearer ".count)), token) else {
            throw APIError(.forbidden, code: "forbidden", message: "the admin token is not valid")
        }
    }
}
