import Foundation
import Hummingbird
import HummingbirdCore
import NIOHTTPTypes
import Metrics
import NIOCore
import Synchronization

/// What a client's connection may hold of the server: slow and idle clients (a slowloris
/// dripping its headers, thousands of idle keep-alive sockets) must not stop `/health` or new
/// orders.
///
/// - ``idleTimeout``: a connection with no request in progress for this long is closed: idle
///   keep-alive, and a client sending its request head too slowly (no part of a request is read
///   until its whole head is; Hummingbird's `HTTPConnectionStateHandler`).
/// - ``bodyTimeout``: a request's body must have arrived this long after its head, else the
///   connection is closed (``ConnectionGuard``).
/// - ``maxConnections``: connections open at once; one more is closed as soon as it is accepted
///   (``ConnectionGuard``), and counted.
public struct ConnectionLimits: Sendable {
    public var idleTimeout: Duration
    public var bodyTimeout: Duration
    public var maxConnections: Int

    public init(idleTimeout: Duration = .seconds(30), bodyTimeout: Duration = .seconds(10), maxConnections: Int = 10_000) {
        self.idleTimeout = idleTimeout
        self.bodyTimeout = bodyTimeout
        self.maxConnections = maxConnections
    }

    /// The most connections this process can hold: its open-file limit, less a margin for the
    /// database, its WAL and the outgoing connections. Raises the soft limit to the hard one.
    public static func connectionCeiling() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1_000 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return max(64, Int(min(limit.rlim_cur, 1 << 30)) - 256)
    }

    /// The HTTP/1 server with these limits.
    public func server(gate: ConnectionGate) -> HTTPServerBuilder {
        let bodyTimeout = self.bodyTimeout
        return .http1(configuration: .init(additionalChannelHandlers: [ConnectionGuard(gate: gate, bodyTimeout: bodyTimeout)],
                                           idleTimeout: .nanoseconds(Int64(idleTimeout.asSeconds * 1e9))))
    }
}

/// The process's count of open connections against ``ConnectionLimits/maxConnections``, with
/// its metrics (`flashsale_http_connections`, `flashsale_http_connections_closed_total{reason}`).
public final class ConnectionGate: Sendable {
    public let limit: Int
    private let open = Atomic<Int>(0)
    private let gauge: Gauge
    private let refused: Counter
    private let slowBodies: Counter

    public init(limit: Int, factory: any MetricsFactory) {
        self.limit = limit
        gauge = Gauge(label: "flashsale_http_connections", factory: factory)
        refused = Counter(label: "flashsale_http_connections_closed_total", dimensions: [("reason", "max_connections")], factory: factory)
        slowBodies = Counter(label: "flashsale_http_connections_closed_total", dimensions: [("reason", "body_timeout")], factory: factory)
    }

    /// Connections open now.
    public var current: Int { open.load(ordering: .relaxed) }

    /// Takes a place for a new connection; false when the limit is reached (nothing taken).
    func enter() -> Bool {
        let now = open.add(1, ordering: .relaxed).newValue
        guard now <= limit else {
            open.subtract(1, ordering: .relaxed)
            refused.increment()
            return false
        }
        gauge.record(now)
        return true
    }

    func leave() {
        gauge.record(open.subtract(1, ordering: .relaxed).newValue)
    }

    func bodyTimedOut() { slowBodies.increment() }
}

/// One connection's guard (in its channel pipeline, after HTTP decoding): takes its place in
/// the ``ConnectionGate`` (closing the connection when there is none), and closes it when a
/// request's body has not arrived ``ConnectionLimits/bodyTimeout`` after its head.
///
/// Hand-written: Hummingbird bounds idle time, but neither it nor NIO (its `IdleStateHandler`
/// sees bytes, not requests) bounds connections or the time to read one request.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let gate: ConnectionGate
    private let bodyTimeout: TimeAmount
    private var counted = false
    private var bodyDeadline: Scheduled<Void>?
    /// Requests read (their heads) whose responses have not ended.
    private var unanswered = 0
    /// A request's head was read and its end not yet.
    private var reading = false

    init(gate: ConnectionGate, bodyTimeout: Duration) {
        self.gate = gate
        self.bodyTimeout = .nanoseconds(Int64(bodyTimeout.asSeconds * 1e9))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { take(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        take(context)
        context.fireChannelActive()
    }

    private func take(_ context: ChannelHandlerContext) {
        guard !counted else { return }
        if gate.enter() {
            counted = true
        } else {
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        release()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        bodyDeadline?.cancel()
        bodyDeadline = nil
        release()
    }

    private func release() {
        if counted {
            counted = false
            gate.leave()
        }
    }

    /// A pipelined request's clock starts only once the requests before it are answered: until
    /// then the server is not reading it, and its slowness is not the client's.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            reading = true
            if unanswered == 0 { startBodyClock(context) }
            unanswered += 1
        case .end:
            reading = false
            bodyDeadline?.cancel()
            bodyDeadline = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            unanswered = max(0, unanswered - 1)
            if reading, unanswered == 1, bodyDeadline == nil { startBodyClock(context) }
        }
        context.write(data, promise: promise)
    }

    private func startBodyClock(_ context: ChannelHandlerContext) {
        bodyDeadline?.cancel()
        let gate = self.gate
        bodyDeadline = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: bodyTimeout) {
            gate.bodyTimedOut()
            context.close(promise: nil)
        }
    }
}
