import HTTPTypes
import Hummingbird
import Logging

/// Gives every request an id: the client's `X-Request-Id` when it is a sane token (1–128 of
/// `A–Z a–z 0–9 . _ : -`), else the one Hummingbird made. The id is on every log line written
/// while handling the request (`hb.request.id`, Hummingbird's own key, so its lines carry it
/// too) and is returned in the response's `X-Request-Id`.
public struct RequestIDMiddleware<Context: RequestContext>: RouterMiddleware {
    public static var headerName: HTTPField.Name { HTTPField.Name.requestID }

    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let id: String
        if let given = request.headers[Self.headerName], Self.isAcceptable(given) {
            id = given
            context.logger[metadataKey: "hb.request.id"] = .string(given)
        } else {
            id = context.id
        }
        do {
            var response = try await next(request, context)
            response.headers[Self.headerName] = id
            return response
        } catch var error as HTTPError {
            // Errors that reach this far become responses in Hummingbird: they carry the id too.
            error.headers[Self.headerName] = id
            throw error
        }
    }

    /// A client's id is used only when it cannot break a log line or a header.
    static func isAcceptable(_ id: String) -> Bool {
        let utf8 = id.utf8
        guard (1...128).contains(utf8.count) else { return false }
        return utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "-"):
                true
            default:
                false
            }
        }
    }
}


extension HTTPField.Name {
    /// `X-Request-Id`, made once (a generic type cannot hold it, and building it lowercases the name).
    public static let requestID = HTTPField.Name("X-Request-Id")!
}
