import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Credentials found the way AWS's SDKs and CLI find them, in this order:
/// 1. the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`;
/// 2. the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`)
///    and config file (`AWS_CONFIG_FILE`, default `~/.aws/config`), profile `AWS_PROFILE`
///    (default `default`);
/// 3. the ECS container credentials endpoint (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, or
///    `AWS_CONTAINER_CREDENTIALS_FULL_URI` with `AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]`): a
///    task role, as the seeds' ECS workers have;
/// 4. EC2 instance metadata, IMDSv2 (a session token first; `AWS_EC2_METADATA_DISABLED=true`
///    turns it off, `AWS_EC2_METADATA_SERVICE_ENDPOINT` moves it).
///
/// The first source that is configured gives the credentials. Long-term keys (environment,
/// files) are read once; temporary credentials (the container's, the instance's) are fetched
/// again, through the chain, ``RefreshingCredentials/refreshWindow`` before they expire, and at
/// once when AWS answers that a token expired.
public final class AWSCredentialChain: AWSCredentialsProvider {
    private let chosen: RefreshingCredentials

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, http: HTTPClient = .shared) {
        let sources = Self.sources(environment: environment, http: http)
        chosen = RefreshingCredentials { try await Self.firstConfigured(sources) }
    }

    public func credentials() async throws -> AWSCredentials { try await chosen.credentials() }
    public func invalidate() async { await chosen.invalidate() }

    /// The source that would be used, for logs (`environment`, `profile default`, `ECS container`, `IMDSv2`).
    public func sourceName() async throws -> String { try await chosen.sourceName() }

    typealias Source = (name: String, fetch: @Sendable () async throws -> AWSCredentials?)

    /// Each source answers nil when it is not configured here (the chain goes on), or throws when
    /// it is but fails (the chain stops: a broken configuration is not silently skipped).
    static func sources(environment: [String: String], http: HTTPClient) -> [Source] {
        let profile = environment["AWS_PROFILE"] ?? "default"
        return [
            ("environment", { try EnvironmentCredentials(environment: environment).credentialsIfSet() }),
            ("profile \(profile)", { try SharedCredentialsFile(environment: environment).credentials() }),
            ("ECS container", { try await ContainerCredentials(environment: environment, http: http)?.fetch() }),
            ("IMDSv2", { try await InstanceMetadataCredentials(environment: environment, http: http)?.fetch() }),
        ]
    }

    static func firstConfigured(_ sources: [Source]) async throws -> (String, AWSCredentials) {
        for source in sources {
            if let credentials = try await source.fetch() { return (source.name, credentials) }
        }
        throw AWSError(code: "NoCredentials", message: """
            no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/credentials, \
            or run on ECS with a task role or on EC2 with an instance profile
            """, status: 0, action: "credentials")
    }
}

/// Caches credentials from one fetch, asks again `refreshWindow` before they expire (or when
/// told they are bad), and lets concurrent callers share one fetch.
actor RefreshingCredentials {
    /// How long before expiry credentials are replaced (AWS's SDKs use about 5 min).
    static let refreshWindow: TimeInterval = 300
    private let fetch: @Sendable () async throws -> (String, AWSCredentials)
    private var current: (name: String, credentials: AWSCredentials)?
    private var inFlight: Task<(String, AWSCredentials), any Error>?

    init(fetch: @escaping @Sendable () async throws -> (String, AWSCredentials)) {
        self.fetch = fetch
    }

    func credentials() async throws -> AWSCredentials {
        if let current, !Self.needsRefresh(current.credentials, now: Date()) { return current.credentials }
        do {
            return try await refreshed().1
        } catch {
            // A failed refresh keeps credentials that still work (the source may be back soon).
            if let current, (current.credentials.expiration ?? .distantFuture) > Date() { return current.credentials }
            throw error
        }
    }

    func sourceName() async throws -> String {
        if let current { return current.name }
        return try await refreshed().0
    }

    func invalidate() {
        current = nil
    }

    static func needsRefresh(_ credentials: AWSCredentials, now: Date) -> Bool {
        guard let expiration = credentials.expiration else { return false }
        return expiration.timeIntervalSince(now) < refreshWindow
    }

    private func refreshed() async throws -> (String, AWSCredentials) {
        if let inFlight { return try await inFlight.value }
        let task = Task { try await fetch() }
        inFlight = task
        defer { inFlight = nil }
        let fresh = try await task.value
        current = (fresh.0, fresh.1)
        return fresh
    }
}

extension EnvironmentCredentials {
    /// Nil when the variables are not set.
    func credentialsIfSet() throws -> AWSCredentials? {
        guard environment["AWS_ACCESS_KEY_ID"] != nil || environment["AWS_SECRET_ACCESS_KEY"] != nil else { return nil }
        guard let id = environment["AWS_ACCESS_KEY_ID"], !id.isEmpty, let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty else {
            throw AWSError(code: "NoCredentials", message: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must both be set", status: 0, action: "credentials")
        }
        return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 })
    }
}

/// `~/.aws/credentials` and `~/.aws/config`, INI files of profiles.
struct SharedCredentialsFile {
    let environment: [String: String]

    var home: String { environment["HOME"] ?? NSHomeDirectory() }
    var credentialsPath: String { environment["AWS_SHARED_CREDENTIALS_FILE"] ?? home + "/.aws/credentials" }
    var configPath: String { environment["AWS_CONFIG_FILE"] ?? home + "/.aws/config" }

    /// The profile's keys: from the credentials file, else the config file's `[profile name]`
    /// (`[default]` there). Nil when neither names the profile and AWS_PROFILE was not set; an
    /// error when AWS_PROFILE names a profile with no keys.
    func credentials() throws -> AWSCredentials? {
        let explicit = environment["AWS_PROFILE"]
        let profile = explicit ?? "default"
        let fromCredentials = Self.parse(read(credentialsPath))[profile]
        let configSection = profile == "default" ? "default" : "profile \(profile)"
        let fromConfig = Self.parse(read(configPath))[configSection]
        for values in [fromCredentials, fromConfig].compactMap({ $0 }) {
            guard let id = values["aws_access_key_id"] else { continue }
            guard let secret = values["aws_secret_access_key"] else {
                throw AWSError(code: "NoCredentials", message: "profile '\(profile)' has aws_access_key_id but no aws_secret_access_key",
                               status: 0, action: "credentials")
            }
            return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: values["aws_session_token"])
        }
        if explicit != nil {
            throw AWSError(code: "NoCredentials", message: "AWS_PROFILE is '\(profile)', but neither \(credentialsPath) nor \(configPath) gives it keys",
                           status: 0, action: "credentials")
        }
        return nil
    }

    private func read(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    /// Sections of `key = value` lines; `#` and `;` start comments; names and keys are trimmed.
    static func parse(_ text: String) -> [String: [String: String]] {
        var sections: [String: [String: String]] = [:]
        var section: String?
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                let name = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                section = name
                sections[name, default: [:]] = sections[name] ?? [:]
                continue
            }
            guard let section, let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            sections[section]?[key] = value
        }
        return sections
    }
}

/// The JSON both credential endpoints answer: `AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`.
struct TemporaryCredentials: Decodable {
    var AccessKeyId: String
    var SecretAccessKey: String
    var Token: String?
    var Expiration: String?

    func credentials(source: String) throws -> AWSCredentials {
        var expiration: Date?
        if let text = Expiration {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime]
            let fractional = ISO8601DateFormatter()
            fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            guard let date = formatter.date(from: text) ?? fractional.date(from: text) else {
                throw AWSError(code: "InvalidCredentials", message: "\(source) gave an unreadable Expiration '\(text)'", status: 0, action: "credentials")
            }
            expiration = date
        }
        return AWSCredentials(accessKeyID: AccessKeyId, secretAccessKey: SecretAccessKey, sessionToken: Token, expiration: expiration)
    }
}

/// One GET or PUT to a credentials endpoint, with a short timeout.
func credentialsRequest(_ http: HTTPClient, _ url: String, method: HTTPMethod = .GET, headers: [(String, String)],
                        timeout: TimeAmount, source: String) async throws -> Data {
    var request = HTTPClientRequest(url: url)
    request.method = method
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    let response: HTTPClientResponse
    let body: ByteBuffer
    do {
        response = try await http.execute(request, timeout: timeout)
        body = try await response.body.collect(upTo: 1024 * 1024)
    } catch {
        throw AWSError(code: "CredentialsUnavailable", message: "\(source) at \(url) did not answer: \(error)", status: 0, action: "credentials")
    }
    guard response.status == .ok else {
        throw AWSError(code: "CredentialsUnavailable", message: "\(source) at \(url) answered HTTP \(response.status.code)",
                       status: Int(response.status.code), action: "credentials")
    }
    return Data(body.readableBytesView)
}

/// The ECS task role's credentials, from the container credentials endpoint.
struct ContainerCredentials {
    let url: String
    let authorization: String?
    let http: HTTPClient

    /// Nil when neither container variable is set. A FULL_URI must be https, or http to a
    /// loopback or ECS/EKS link-local host (as AWS's SDKs require).
    init?(environment: [String: String], http: HTTPClient) throws {
        self.http = http
        if let relative = environment["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"], !relative.isEmpty {
            url = "http://169.254.170.2" + (relative.hasPrefix("/") ? relative : "/" + relative)
        } else if let full = environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"], !full.isEmpty {
            guard let components = URLComponents(string: full), let host = components.host,
                  components.scheme == "https" || (components.scheme == "http" && Self.allowedHTTPHosts.contains(host))
            else {
                throw AWSError(code: "InvalidConfiguration",
                               message: "AWS_CONTAINER_CREDENTIALS_FULL_URI must be https, or http to a loopback or ECS host, not '\(full)'",
                               status: 0, action: "credentials")
            }
            url = full
        } else {
            return nil
        }
        if let file = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"], !file.isEmpty {
            authorization = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            authorization = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
        }
    }

    static let allowedHTTPHosts: Set<String> = ["127.0.0.1", "localhost", "::1", "[::1]", "169.254.170.2", "169.254.170.23", "fd00:ec2::23", "[fd00:ec2::23]"]

    func fetch() async throws -> AWSCredentials {
        let data = try await credentialsRequest(http, url, headers: authorization.map { [("Authorization", $0)] } ?? [],
                                                timeout: .seconds(5), source: "the ECS container credentials endpoint")
        return try JSONDecoder().decode(TemporaryCredentials.self, from: data).credentials(source: "the ECS container credentials endpoint")
    }
}

/// The EC2 instance profile's credentials, through IMDSv2: a session token (PUT), the role's
/// name, then its credentials.
struct InstanceMetadataCredentials {
    let endpoint: String
    let http: HTTPClient

    /// Each call's limit: `AWS_METADATA_SERVICE_TIMEOUT` seconds, 1 by default (as AWS's SDKs).
    let timeout: TimeAmount

    /// Nil when `AWS_EC2_METADATA_DISABLED` is true.
    init?(environment: [String: String], http: HTTPClient) {
        if environment["AWS_EC2_METADATA_DISABLED"]?.lowercased() == "true" { return nil }
        let endpoint = environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"] ?? "http://169.254.169.254"
        self.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        self.http = http
        let seconds = environment["AWS_METADATA_SERVICE_TIMEOUT"].flatMap(Double.init).map { min(max($0, 0.1), 60) } ?? 1
        self.timeout = .milliseconds(Int64(seconds * 1000))
    }

    func fetch() async throws -> AWSCredentials? {
        let source = "EC2 instance metadata (IMDSv2)"
        let token: Data
        do {
            token = try await credentialsRequest(http, endpoint + "/latest/api/token", method: .PUT,
                                                 headers: [("X-aws-ec2-metadata-token-ttl-seconds", "21600")], timeout: timeout, source: source)
        } catch let error as AWSError where error.status == 0 {
            return nil  // no metadata service: not on EC2
        }
        let header = [("X-aws-ec2-metadata-token", String(decoding: token, as: UTF8.self))]
        let roles = try await credentialsRequest(http, endpoint + "/latest/meta-data/iam/security-credentials/", headers: header,
                                                 timeout: timeout, source: source)
        guard let role = String(decoding: roles, as: UTF8.self).split(whereSeparator: \.isNewline).first.map(String.init), !role.isEmpty else {
            throw AWSError(code: "NoCredentials", message: "this instance has no IAM role", status: 0, action: "credentials")
        }
        let data = try await credentialsRequest(http, endpoint + "/latest/meta-data/iam/security-credentials/" + role, headers: header,
                                                timeout: timeout, source: source)
        return try JSONDecoder().decode(TemporaryCredentials.self, from: data).credentials(source: source)
    }
}
