import Foundation

/// Where credentials come from; asked before every call (providers cache and refresh).
public protocol AWSCredentialsProvider: Sendable {
    func credentials() async throws -> AWSCredentials
    /// AWS said the credentials are no longer good (an expired token): fetch new ones next time.
    func invalidate() async
}

extension AWSCredentialsProvider {
    public func invalidate() async {}
}

/// Fixed credentials.
public struct StaticCredentials: AWSCredentialsProvider {
    public let value: AWSCredentials

    public init(_ value: AWSCredentials) {
        self.value = value
    }

    public func credentials() async throws -> AWSCredentials { value }
}

/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
public struct EnvironmentCredentials: AWSCredentialsProvider {
    let environment: [String: String]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    public func credentials() async throws -> AWSCredentials {
        guard let credentials = try credentialsIfSet() else {
            throw AWSError(code: "NoCredentials", message: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set", status: 0, action: "credentials")
        }
        return credentials
    }
}
