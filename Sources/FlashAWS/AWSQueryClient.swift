import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import XMLCoder

/// Calls one AWS service's query protocol (SNS's): `POST /` with a form-encoded body
/// (`Action=Publish&Version=2010-03-31&…`), answered in XML. The XML is read with XMLCoder (in
/// the package mirror), not by hand.
public struct AWSQueryClient: Sendable {
    public var configuration: AWSConfiguration { transport.configuration }
    let transport: AWSTransport
    let version: String
    var timeout: TimeAmount = .seconds(30)

    public init(configuration: AWSConfiguration, service: String, version: String, http: HTTPClient = .shared) {
        self.transport = AWSTransport(configuration: configuration, service: service, http: http)
        self.version = version
    }

    /// Calls `action` with `parameters` (already flattened: `Attributes.entry.1.key`, …); decodes
    /// the `<ActionResult>` element of the answer as `Result`.
    public func call<Result: Decodable>(_ action: String, _ parameters: [(String, String)], as _: Result.Type) async throws -> Result {
        let data = try await send(action, parameters)
        do {
            return try XMLDecoder().decode(QueryResponse<Result>.self, from: data).result
        } catch {
            throw AWSError(code: "InvalidResponse", message: "could not read the answer: \(error)", status: 200, action: action)
        }
    }

    /// Calls an action whose answer carries nothing but its request id.
    public func call(_ action: String, _ parameters: [(String, String)]) async throws {
        _ = try await send(action, parameters)
    }

    private func send(_ action: String, _ parameters: [(String, String)]) async throws -> Data {
        let body = Self.formEncoded([("Action", action), ("Version", version)] + parameters)
        let headers = [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")]
        return try await transport.post(action, headers: headers, body: Array(body.utf8), timeout: timeout) { status, _, body in
            Self.error(action: action, status: status, body: body)
        }
    }

    /// `name=value&…`, each percent-encoded as AWS signs it (RFC 3986: all but `A-Za-z0-9-_.~`).
    static func formEncoded(_ parameters: [(String, String)]) -> String {
        parameters.map { "\(SigV4Signer.uriEncode($0.0))=\(SigV4Signer.uriEncode($0.1))" }.joined(separator: "&")
    }

    /// `<ErrorResponse><Error><Code>NotFound</Code><Message>…</Message></Error></ErrorResponse>`.
    static func error(action: String, status: Int, body: Data) -> AWSError {
        struct ErrorResponse: Decodable {
            struct Detail: Decodable {
                var Code: String?
                var Message: String?
            }

            var Error: Detail?
        }
        let decoded = try? XMLDecoder().decode(ErrorResponse.self, from: body)
        return AWSError(code: decoded?.Error?.Code ?? "HTTP\(status)",
                        message: AWSError.redacted(decoded?.Error?.Message ?? String(decoding: body.prefix(300), as: UTF8.self)),
                        status: status, action: action)
    }
}

/// `<XResponse><XResult>…</XResult><ResponseMetadata>…</ResponseMetadata></XResponse>`: the result.
struct QueryResponse<Result: Decodable>: Decodable {
    var result: Result

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        guard let key = container.allKeys.first(where: { $0.stringValue.hasSuffix("Result") }) else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "no …Result element"))
        }
        result = try container.decode(Result.self, forKey: key)
    }
}

/// A query-protocol list: `<member>…</member><member>…</member>`.
struct QueryList<Element: Decodable>: Decodable {
    var member: [Element]?
}
