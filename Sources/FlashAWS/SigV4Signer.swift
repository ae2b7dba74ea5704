import Crypto
import Foundation

/// AWS Signature Version 4: signs an HTTP request with an access key, for one region and
/// service (`sqs`, `sns`).
///
/// Hand-written: no AWS SDK for Swift is in the package mirror (Soto cannot be used), and the
/// signer is the small, well-specified part of one (AWS's "Signature Version 4 signing process";
/// tested against AWS's published test suite in `SigV4SignerTests`). HMAC and SHA-256 come from
/// swift-crypto.
public struct SigV4Signer: Sendable {
    public var region: String
    public var service: String

    public init(region: String, service: String) {
        self.region = region
        self.service = service
    }

    /// A request to sign: `path` is the decoded path (`/` for the JSON and query protocols),
    /// `query` its parameters (decoded), `headers` every header to sign (`Host` among them).
    public struct Request: Sendable {
        public var method: String
        public var path: String
        public var query: [(String, String)]
        public var headers: [(String, String)]
        public var body: [UInt8]

        public init(method: String, path: String = "/", query: [(String, String)] = [], headers: [(String, String)], body: [UInt8] = []) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
            self.body = body
        }
    }

    /// The headers to add to `request`: `X-Amz-Date`, `X-Amz-Security-Token` with temporary
    /// credentials, and `Authorization`.
    public func sign(_ request: Request, credentials: AWSCredentials, at date: Date) -> [(String, String)] {
        let amzDate = Self.amzDate(date)
        var added: [(String, String)] = [("X-Amz-Date", amzDate)]
        if let token = credentials.sessionToken { added.append(("X-Amz-Security-Token", token)) }
        var signing = request
        signing.headers += added
        let scope = "\(amzDate.prefix(8))/\(region)/\(service)/aws4_request"
        let (canonical, signedHeaders) = Self.canonicalRequest(signing)
        let stringToSign = "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope)\n\(Self.hex(SHA256.hash(data: Array(canonical.utf8))))"
        let key = signingKey(secret: credentials.secretAccessKey, day: String(amzDate.prefix(8)))
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: key))
        added.append(("Authorization",
                      "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"))
        return added
    }

    /// The key of one day, region and service: an HMAC chain from the secret.
    func signingKey(secret: String, day: String) -> SymmetricKey {
        var key = SymmetricKey(data: Array("AWS4\(secret)".utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key)))
        }
        return key
    }

    /// The canonical request and its signed-header list.
    static func canonicalRequest(_ request: Request) -> (String, String) {
        let path = request.path.isEmpty ? "/" : request.path
        let uri = path.split(separator: "/", omittingEmptySubsequences: false).map { uriEncode(String($0)) }.joined(separator: "/")
        let encoded: [(name: String, value: String)] = request.query.map { (uriEncode($0.0), uriEncode($0.1)) }
        let sorted = encoded.sorted { left, right in left.name == right.name ? left.value < right.value : left.name < right.name }
        let query = sorted.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
        // Header names lower-cased; values trimmed with inner runs of spaces folded; a name sent
        // twice keeps its values in order, joined by commas.
        var headers: [String: [String]] = [:]
        for (name, value) in request.headers {
            let folded = value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            headers[name.lowercased(), default: []].append(folded.trimmingCharacters(in: .whitespaces))
        }
        let names = headers.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(headers[$0]!.joined(separator: ","))\n" }.joined()
        let signed = names.joined(separator: ";")
        let payload = hex(SHA256.hash(data: request.body))
        return ([request.method, uri, query, canonicalHeaders, signed, payload].joined(separator: "\n"), signed)
    }

    /// RFC 3986 percent-encoding of everything but the unreserved characters, as SigV4 wants.
    static func uriEncode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC.
    static func amzDate(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }
}

/// An access key: long-lived (an IAM user's) or temporary (a role's, with a session token and
/// an expiry).
public struct AWSCredentials: Sendable, Equatable {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    /// When temporary credentials stop working.
    public var expiration: Date?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
    }
}

extension AWSCredentials: CustomStringConvertible {
    /// Never the secret or the token: credentials may end up in a log line.
    public var description: String { "AWSCredentials(\(accessKeyID), secret and token redacted)" }
}
