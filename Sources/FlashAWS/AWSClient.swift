import AsyncHTTPClient
import FlashCore
import FlashQueue
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// Where AWS is and who is calling: the region, the endpoint (`--aws-endpoint`,
/// `AWS_ENDPOINT_URL`, for a compatible local server; AWS's own when nil) and the credentials.
public struct AWSConfiguration: Sendable {
    public var region: String
    public var endpoint: String?
    public var credentials: any AWSCredentialsProvider

    public init(region: String, endpoint: String? = nil, credentials: any AWSCredentialsProvider) {
        self.region = region
        self.endpoint = endpoint
        self.credentials = credentials
    }

    /// The base URL of `service` (`sqs`, `sns`).
    func url(of service: String) -> String {
        if let endpoint { return endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint }
        return "https://\(service).\(region).amazonaws.com"
    }
}

/// An error AWS answered (or the transport gave) for one call.
public struct AWSError: Error, Sendable, CustomStringConvertible {
    /// AWS's error code, without its namespace (`QueueDoesNotExist`, `ThrottlingException`,
    /// `ExpiredToken`, `AccessDenied`…), or `Transport` when no answer came.
    public var code: String
    public var message: String
    /// The HTTP status (0 when no answer came).
    public var status: Int
    public var action: String

    /// Worth another try: throttling, a server error, or no answer.
    public var isTransient: Bool {
        status == 0 || status >= 500 || status == 429
            || ["ThrottlingException", "Throttling", "RequestThrottled", "RequestThrottledException", "ServiceUnavailable",
                "InternalError", "InternalFailure", "KMSThrottlingException"].contains(code)
    }

    /// The credentials' token expired (or is no longer valid): new credentials may work.
    public var isExpiredCredentials: Bool {
        ["ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"].contains(code)
    }

    /// AWS's message, cut before any canonical request it quotes (a signature mismatch quotes
    /// the request signed, security token included): error messages end up in logs.
    static func redacted(_ message: String) -> String {
        var text = message
        for marker in ["The Canonical String", "The canonical request", "Canonical String", "x-amz-security-token"] {
            if let range = text.range(of: marker, options: .caseInsensitive) { text = String(text[..<range.lowerBound]) + "[…redacted]" }
        }
        return text
    }

    public var description: String { "AWS \(action) failed: \(code) (HTTP \(status)): \(message)" }
}

extension AWSError: RefusedCall {
    /// AWS answered with a client error, and not one saying a purge is already under way.
    public var didNothing: Bool { (400..<500).contains(status) && status != 429 && !isTransient && code != "PurgeQueueInProgress" }
}

/// Sends signed requests to one AWS service: `POST /` with a body, signed with Signature
/// Version 4; transient errors are retried with exponential backoff and full jitter. The JSON
/// (SQS) and query (SNS) protocols differ only in how they write a call and read its answer.
///
/// Hand-written over async-http-client: no AWS SDK for Swift is in the package mirror.
struct AWSTransport: Sendable {
    let configuration: AWSConfiguration
    let http: HTTPClient
    let signer: SigV4Signer
    let url: String
    let host: String
    /// Attempts per call, the first included.
    var attempts = 4

    init(configuration: AWSConfiguration, service: String, http: HTTPClient) {
        self.configuration = configuration
        self.http = http
        self.signer = SigV4Signer(region: configuration.region, service: service)
        self.url = configuration.url(of: service)
        self.host = URLComponents(string: url).map { components in
            (components.host ?? "") + (components.port.map { ":\($0)" } ?? "")
        } ?? ""
    }

    /// Posts `body` with `headers` (retrying transient failures); returns the answer's body, or
    /// throws the ``AWSError`` that `decodeError` reads from a failed answer.
    func post(_ action: String, headers: [(String, String)], body: [UInt8], timeout: TimeAmount,
              decodeError: (Int, HTTPHeaders, Data) -> AWSError) async throws -> Data {
        var attempt = 0
        while true {
            do {
                return try await postOnce(action, headers: headers, body: body, timeout: timeout, decodeError: decodeError)
            } catch let error as AWSError where error.isTransient && attempt + 1 < attempts {
                attempt += 1
                // Full jitter: a random wait up to 50 ms × 2^attempt.
                try await Task.sleep(for: .milliseconds(Int64.random(in: 0...(50 << attempt))))
            } catch let error as AWSError where error.isExpiredCredentials && attempt + 1 < attempts {
                // Temporary credentials ran out early (or were revoked): fetch new ones, once.
                attempt = attempts - 1
                await configuration.credentials.invalidate()
            }
        }
    }

    private func postOnce(_ action: String, headers: [(String, String)], body: [UInt8], timeout: TimeAmount,
                          decodeError: (Int, HTTPHeaders, Data) -> AWSError) async throws -> Data {
        let credentials = try await configuration.credentials.credentials()
        let headers = [("Host", host)] + headers
        let signed = signer.sign(SigV4Signer.Request(method: "POST", headers: headers, body: body), credentials: credentials, at: Date())
        var request = HTTPClientRequest(url: url + "/")
        request.method = .POST
        for (name, value) in headers + signed where name != "Host" { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await http.execute(request, timeout: timeout)
            bytes = try await response.body.collect(upTo: 16 * 1024 * 1024)
        } catch {
            throw AWSError(code: "Transport", message: "\(error)", status: 0, action: action)
        }
        let data = Data(bytes.readableBytesView)
        guard (200..<300).contains(response.status.code) else {
            throw decodeError(Int(response.status.code), response.headers, data)
        }
        return data
    }
}

/// Calls one AWS service's JSON protocol (SQS's): `POST /` with `X-Amz-Target: <prefix>.<Action>`
/// and an `application/x-amz-json-1.0` body.
public struct AWSJSONClient: Sendable {
    public var configuration: AWSConfiguration { transport.configuration }
    let transport: AWSTransport
    let targetPrefix: String
    var timeout: TimeAmount = .seconds(30)

    public init(configuration: AWSConfiguration, service: String, targetPrefix: String, http: HTTPClient = .shared) {
        self.transport = AWSTransport(configuration: configuration, service: service, http: http)
        self.targetPrefix = targetPrefix
    }

    /// Calls `action` with `input`; decodes the answer as `Output`.
    public func call<Input: Encodable, Output: Decodable>(_ action: String, _ input: Input, as _: Output.Type = Output.self,
                                                          timeout: TimeAmount? = nil) async throws -> Output {
        let body = try JSONEncoder().encode(input)
        let headers = [("Content-Type", "application/x-amz-json-1.0"), ("X-Amz-Target", "\(targetPrefix).\(action)")]
        let data = try await transport.post(action, headers: headers, body: Array(body), timeout: timeout ?? self.timeout) { status, headers, body in
            Self.error(action: action, status: status, headers: headers, body: body)
        }
        return try JSONDecoder().decode(Output.self, from: data.isEmpty ? Data("{}".utf8) : data)
    }

    /// AWS's error: `__type` (`com.amazonaws.sqs#QueueDoesNotExist`) and `message` in the body,
    /// or the legacy code in `x-amzn-query-error` (`AWS.SimpleQueueService.NonExistentQueue;Sender`).
    static func error(action: String, status: Int, headers: HTTPHeaders, body: Data) -> AWSError {
        struct Body: Decodable {
            var __type: String?
            var message: String?
            var Message: String?
        }
        let decoded = try? JSONDecoder().decode(Body.self, from: body)
        var code = decoded?.__type.map { String($0.split(separator: "#").last ?? Substring($0)) } ?? "HTTP\(status)"
        if let legacy = headers.first(name: "x-amzn-query-error")?.split(separator: ";").first {
            code = String(legacy.split(separator: ".").last ?? legacy)
        }
        let message = decoded?.message ?? decoded?.Message ?? String(decoding: body.prefix(300), as: UTF8.self)
        return AWSError(code: code, message: AWSError.redacted(message), status: status, action: action)
    }
}
