import Foundation

/// What `flashsale load` sends, to where, and how hard.
public struct LoadConfiguration: Sendable {
    /// Which requests to send.
    public enum Endpoint: Sendable, Hashable {
        /// `POST /orders/sync` with the seeds' order body (1–3 random items).
        case sync
        /// `POST /orders/async` with the seeds' order body.
        case async
        /// `POST /buy` with `{"userId": n}`, the seed engine's attack.
        case buy
        /// Any path: POST with the order body, or GET with `method`.
        case path(String, method: String)

        public init?(parsing text: String, method: String = "POST") {
            switch text {
            case "sync": self = .sync
            case "async": self = .async
            case "buy": self = .buy
            default:
                guard text.hasPrefix("/") else { return nil }
                self = .path(text, method: method.uppercased())
            }
        }

        /// The request path.
        public var path: String {
            switch self {
            case .sync: return "/orders/sync"
            case .async: return "/orders/async"
            case .buy: return "/buy"
            case let .path(path, _): return path
            }
        }

        /// The HTTP method.
        public var method: String {
            if case let .path(_, method) = self { return method }
            return "POST"
        }
    }

    /// Base URL of the server, e.g. `http://127.0.0.1:8080` or an AWS load balancer's.
    public var host: String
    public var endpoint: Endpoint = .async
    /// Closed loop: simulated users, each sending, then waiting, then sending again.
    public var users = 10
    /// Users started per second.
    public var spawnRate = 10.0
    /// Think time between a user's requests (uniform in the range).
    public var wait: ClosedRange<Double> = 0.1...0.5
    /// How long to run.
    public var duration: Double = 30
    /// Requests to send in all, at most (as `hey -n` or `ab -n`); nil sends until the duration
    /// ends. A run that reaches it ends the moment the last of them is answered, so none is cut
    /// off at a deadline: every request sent is in the counts (answered, or failed by its
    /// timeout or a connection error). The duration still bounds the run.
    public var requestLimit: Int?
    /// Open loop: requests per second at fixed intended times; nil runs the closed loop.
    public var rate: Double?
    /// Requests in flight at most in the open loop (later ones wait, and their wait counts).
    public var maxInFlight = 10_000
    /// Per-request timeout; a timeout is a failure.
    public var timeout: Double = 10
    /// Seed of the order-body generator (0: random).
    public var seed: UInt64 = 0
    /// One body sent with every POST instead of generated ones (`flashsale bench` sends the
    /// same body as wrk does, so both generators measure the same work).
    public var body: String?
    /// A body rendered afresh for every request (``RequestTemplate``), instead of generated ones.
    public var bodyTemplate: RequestTemplate?
    /// Headers sent with every request, each value rendered per request.
    public var headers: [Header] = []
    /// The products `{{product}}` picks from.
    public var products: [String] = (1...100).map { "PROD-" + String(format: "%03d", $0) }
    /// A run in stages: the rate (open loop) or the users (closed loop) ramp between targets;
    /// `duration` is then the stages' sum.
    public var stages: LoadStages?

    /// A header with a templated value.
    public struct Header: Sendable {
        public var name: String
        public var value: RequestTemplate
        public init(name: String, value: RequestTemplate) {
            self.name = name
            self.value = value
        }
    }

    public init(host: String) {
        self.host = host.hasSuffix("/") ? String(host.dropLast()) : host
    }
}
