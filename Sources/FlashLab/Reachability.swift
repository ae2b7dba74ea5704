import AsyncHTTPClient
import FlashCore
import Foundation
import NIOCore

/// Whether anything answers HTTP at a URL: the check `load`, `monitor` and `setup-aws` make
/// before they start, so that an address where nothing listens fails at once with its name
/// instead of running every request into a timeout.
public enum Reachability {
    /// Refuses a URL that is not `http(s)://host…`; `option` names the flag in the message.
    public static func checkURL(_ text: String, option: String) throws(ReachabilityError) {
        guard let url = URL(string: text), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), let host = url.host, !host.isEmpty else {
            let hint = text.contains("://") ? "" : " (did you mean http://\(text)?)"
            throw ReachabilityError("\(option) must be an http:// or https:// URL such as http://127.0.0.1:8080, not '\(text)'\(hint)")
        }
    }

    /// Sends `GET url` until any HTTP answer comes back (whatever its status), trying again
    /// every second until `within` has passed; `onRetry` is told of each failed try with
    /// the time left. Throws a ``ReachabilityError`` naming the URL and the last error.
    public static func wait(for url: String, within: Duration, onRetry: @Sendable (_ error: String, _ left: Duration) -> Void = { _, _ in }) async throws {
        var configuration = HTTPClient.Configuration()
        // One attempt per try, each bounded: a refused connection is reported at once.
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout = .init(connect: .seconds(2), read: .seconds(5))
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            try await wait(for: url, within: within, http: http, onRetry: onRetry)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    static func wait(for url: String, within: Duration, http: HTTPClient,
                     onRetry: @Sendable (_ error: String, _ left: Duration) -> Void) async throws {
        let deadline = ContinuousClock.now + within
        while true {
            let lastError: String
            do {
                let response = try await http.execute(HTTPClientRequest(url: url), timeout: .seconds(5))
                _ = try? await response.body.collect(upTo: 1 << 20)
                return
            } catch let error as CancellationError {
                throw error
            } catch {
                lastError = describe(error)
            }
            let left = deadline - ContinuousClock.now
            guard left > .seconds(1) else {
                throw ReachabilityError("nothing answers at \(url) (\(lastError)) after \(within.shortDescription); is the server running there, and is the address right?")
            }
            onRetry(lastError, .seconds(Int64(left.asSeconds.rounded(.up))))
            try await Task.sleep(for: .seconds(1))
        }
    }

    /// A connection failure in a few words ("connection refused").
    public static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "connect timed out"
            case .readTimeout, .deadlineExceeded: return "no answer in time"
            default: break
            }
        }
        let text = "\(error)"
        if text.contains("Connection refused") || text.contains("errno: 111") { return "connection refused" }
        if text.contains("No address associated") || text.contains("Name or service not known") || text.contains("unknown host") { return "the host name does not resolve" }
        return text
    }
}

/// An address that cannot be used or does not answer, with a message meant for the user.
public struct ReachabilityError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
