import Foundation
import FlashBackend
import FlashCore
import Hummingbird
import NIOCore

/// An error answered as JSON: `{"error": {"code": "…", "message": "…"}}` with its HTTP status.
public struct APIError: HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var headers: HTTPFields

    public init(_ status: HTTPResponse.Status, code: String, message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        Response.json(status, Self.body(code: code, message: message), headers: headers)
    }

    /// The JSON body of an error.
    public static func body(code: String, message: String) -> String {
        #"{"error":{"code":\#(JSONText.quoted(code)),"message":\#(JSONText.quoted(message))}}"#
    }

    static func badRequest(_ code: String, _ message: String) -> APIError { APIError(.badRequest, code: code, message: message) }
    static func notFound(_ message: String) -> APIError { APIError(.notFound, code: "not_found", message: message) }
}

/// Turns every error into the API's JSON error shape: Hummingbird's own (404, 413) and
/// unexpected ones (500, logged, with no internals leaked).
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Counts the requests refused at their admission deadline or on arrival.
    let admission: AdmissionControl

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        } catch let error as Overloaded {
            // Refused before its transaction began: true to say nothing was stored.
            admission.recordShed(error.refusal == .forecast ? .forecast : .deadline)
            let seconds = max(1, Int(error.retryAfter.components.seconds))
            return APIError(.serviceUnavailable, code: "overloaded",
                            message: "\(error); this request was not acknowledged and stored nothing: repeat it after Retry-After with the same Idempotency-Key (if an earlier request with that key or order_id stored the order, the repeat returns it)",
                            headers: [.retryAfter: "\(seconds)"]).toResponse()
        } catch let error as BackendUnavailable {
            // Not acknowledged. Said as "nothing was stored" only when that is known; when the
            // store's commit may have happened before the connection was lost, the answer says so.
            // Either way the client repeats the request with its idempotency key, which returns
            // the order if it was stored.
            context.logger.warning("backend unavailable", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            let seconds = max(1, Int(error.retryAfter.components.seconds))
            let (code, message) = switch error.outcome {
            case .notApplied:
                ("unavailable", "the order store cannot be reached right now; the request was not acknowledged and nothing was stored: repeat it with the same Idempotency-Key")
            case .unknown:
                ("unconfirmed", "the order store stopped answering after the request reached it: it may or may not have been stored; repeat it with the same Idempotency-Key to learn which")
            }
            return APIError(.serviceUnavailable, code: code, message: message, headers: [.retryAfter: "\(seconds)"]).toResponse()
        } catch let error as NIOTooManyBytesError {
            _ = error
            return APIError(.contentTooLarge, code: "payload_too_large", message: "the request body is over \(context.maxUploadSize) bytes")
                .toResponse()
        } catch let error as HTTPError {
            let code = switch error.status {
            case .notFound: "not_found"
            case .methodNotAllowed: "method_not_allowed"
            case .contentTooLarge: "payload_too_large"
            case .badRequest: "bad_request"
            default: "http_\(error.status.code)"
            }
            let message = error.status == .notFound ? "no route for \(request.method) \(request.uri.path)" : (error.body ?? error.status.reasonPhrase)
            return APIError(error.status, code: code, message: message, headers: error.headers).toResponse()
        } catch let error as any HTTPResponseError {
            return APIError(error.status, code: "http_\(error.status.code)", message: "\(error)").toResponse()
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return APIError(.internalServerError, code: "internal_error", message: "the server could not complete the request").toResponse()
        }
    }
}

extension APIError {
    func toResponse() -> Response {
        Response.json(status, Self.body(code: code, message: message), headers: headers)
    }
}

extension Response {
    /// A JSON response from an already-encoded body.
    static func json(_ status: HTTPResponse.Status, _ body: String, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    /// A JSON response from encoded bytes.
    static func json(_ status: HTTPResponse.Status, _ body: Data) -> Response {
        Response(status: status, headers: [.contentType: "application/json; charset=utf-8"],
                 body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}
