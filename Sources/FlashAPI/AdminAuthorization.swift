import Hummingbird
import NIOCore

/// The admin check, once for every admin route (they are one route group behind it).
struct AdminMiddleware: RouterMiddleware {
    let policy: AdminPolicy

    func handle(_ request: Request, context: FlashRequestContext,
                next: (Request, FlashRequestContext) async throws -> Response) async throws -> Response {
        try policy.authorize(request, remoteAddress: context.remoteAddress)
        return try await next(request, context)
    }
}

extension AdminPolicy {
    /// Checks an admin request: with a token, `Authorization: Bearer <token>` (401 when missing,
    /// 403 when wrong); without one, only loopback clients (403 otherwise).
    func authorize(_ request: Request, remoteAddress: SocketAddress?) throws {
        if let token {
            guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
                throw APIError(.unauthorized, code: "unauthorized",
                               message: "admin routes need an 'Authorization: Bearer <token>' header",
                               headers: [.wwwAuthenticate: "Bearer"])
            }
            guard Self.constantTimeEquals(String(header.dropFirst("Bearer ".count)), token) else {
                throw APIError(.forbidden, code: "forbidden", message: "the admin token is not valid")
            }
            return
        }
        guard Self.isLoopback(remoteAddress) else {
            throw APIError(.forbidden, code: "forbidden",
                           message: "admin routes answer only to loopback clients unless --admin-token is set")
        }
    }

    static func isLoopback(_ address: SocketAddress?) -> Bool {
        switch address {
        case let .v4(v4)?:
            return (UInt32(bigEndian: v4.address.sin_addr.s_addr) >> 24) == 127
        case let .v6(v6)?:
            let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
            if bytes == Array(repeating: 0, count: 15) + [1] { return true }
            // IPv4-mapped loopback: ::ffff:127.x.y.z
            return bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF && bytes[12] == 127
        case .unixDomainSocket?:
            return true
        default:
            return false
        }
    }

    /// Compares without leaking, through timing, how much of the token matched.
    static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var difference = UInt8(x.count == y.count ? 0 : 1)
        for index in 0..<max(x.count, y.count) {
            difference |= (index < x.count ? x[index] : 0) ^ (index < y.count ? y[index] : 0)
        }
        return difference == 0
    }
}
