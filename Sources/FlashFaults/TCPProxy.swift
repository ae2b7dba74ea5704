import FlashCore
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// A TCP forwarder on loopback that can break the network between a client and its server on
/// demand: cut every connection and refuse new ones (a server gone, a network partition that
/// resets), stall (connections open, nothing delivered: a stalled server or a partition that
/// drops packets; what was held is delivered when it heals, as TCP's retransmission would), or
/// delay every chunk (a slow network).
///
/// For the chaos checker and for tests of what a process does when its database or gateway is
/// away. Written here because no package in the mirror offers one (swift-nio-extras has no
/// proxy); it is NIO's async channels, two copy loops per connection.
///
/// ```swift
/// let proxy = try await TCPProxy(forwardingTo: "127.0.0.1", port: 5432)
/// // run it in the service group (or a task), point the client at proxy.port, then:
/// proxy.mode = .refusing
/// ```
public final class TCPProxy: Service, Sendable {
    /// What the proxy does with traffic.
    public enum Mode: Sendable, Equatable {
        /// Forwards both ways.
        case passing
        /// Forwards both ways, each chunk of bytes this much later (a slow or distant network).
        case delayed(Duration)
        /// Holds every byte in both directions (connections stay open, new ones are accepted).
        case stalled
        /// Closes every connection, and every new one as soon as it is accepted.
        case refusing
    }

    /// The port the proxy listens on (127.0.0.1).
    public let port: Int
    private let target: (host: String, port: Int)
    private let group: any EventLoopGroup
    private let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
    private let state = Mutex(State())

    private struct State {
        var mode = Mode.passing
        /// Both channels of every open connection, by connection number.
        var open: [Int: [any Channel]] = [:]
        var next = 0
    }

    /// Listens on a free loopback port; forwards to `host`:`port` once ``run()`` runs.
    public init(forwardingTo host: String, port: Int, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        target = (host, port)
        self.group = group
        server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        self.port = server.channel.localAddress?.port ?? 0
    }

    /// What the proxy does now; a change applies to open connections at once.
    public var mode: Mode {
        get { state.withLock { $0.mode } }
        set {
            let cut = state.withLock { state -> [any Channel] in
                state.mode = newValue
                return newValue == .refusing ? state.open.values.flatMap { $0 } : []
            }
            for channel in cut { channel.close(promise: nil) }
        }
    }

    /// Connections open now.
    public var connections: Int { state.withLock { $0.open.count } }

    /// Accepts and forwards until the task is cancelled or graceful shutdown; then closes every
    /// connection and the listener.
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await withThrowingDiscardingTaskGroup { connections in
                    try await server.executeThenClose { inbound in
                        for try await client in inbound {
                            connections.addTask { await self.serve(client) }
                        }
                    }
                }
            } onCancel: {
                self.closeAll()
            }
        } onGracefulShutdown: {
            self.closeAll()
        }
    }

    private func closeAll() {
        server.channel.close(promise: nil)
        let open = state.withLock { $0.open.values.flatMap { $0 } }
        for channel in open { channel.close(promise: nil) }
    }

    private func serve(_ client: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        let number = state.withLock { state -> Int? in
            guard state.mode != .refusing else { return nil }
            state.next += 1
            state.open[state.next] = [client.channel]
            return state.next
        }
        guard let number else {
            try? await client.channel.close()
            return
        }
        defer { state.withLock { _ = $0.open.removeValue(forKey: number) } }
        do {
            let upstream = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(2))
                .connect(host: target.host, port: target.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
            let admitted = state.withLock { state -> Bool in
                guard state.mode != .refusing, state.open[number] != nil else { return false }
                state.open[number]?.append(upstream.channel)
                return true
            }
            guard admitted else {
                try? await upstream.channel.close()
                try? await client.channel.close()
                return
            }
            try await client.executeThenClose { clientIn, clientOut in
                try await upstream.executeThenClose { upstreamIn, upstreamOut in
                    await withThrowingTaskGroup(of: Void.self) { copies in
                        copies.addTask { try await self.copy(clientIn, to: upstreamOut) }
                        copies.addTask { try await self.copy(upstreamIn, to: clientOut) }
                        // Either side's end ends the connection: both channels are closed, so the
                        // other copy ends too (a server waiting for a client that gave up would
                        // otherwise keep its side open until its own timeout).
                        _ = try? await copies.next()
                        client.channel.close(promise: nil)
                        upstream.channel.close(promise: nil)
                        copies.cancelAll()
                    }
                }
            }
        } catch {
            try? await client.channel.close()
        }
    }

    /// Forwards `from` to `to` as the mode says. Delayed, each chunk goes out `delay` after it
    /// came in, whatever came before it: the link adds latency, not a pause per chunk in turn
    /// (which would cap its bandwidth at a chunk per delay, and slow a large reply many times over).
    private func copy(_ from: NIOAsyncChannelInboundStream<ByteBuffer>, to: NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws {
        let (chunks, arrivals) = AsyncStream.makeStream(of: (bytes: ByteBuffer, at: ContinuousClock.Instant).self)
        // Chunks read and not yet written, at most: beyond them the reader waits, so a slow
        // receiver holds the rest back in the kernel, as without the proxy.
        let inFlight = AsyncSemaphore(permits: 64)
        try await withThrowingTaskGroup(of: Void.self) { reader in
            reader.addTask {
                defer { arrivals.finish() }
                for try await bytes in from {
                    // Stalled: hold the bytes (and, through back pressure, the rest in the kernel).
                    while self.mode == .stalled { try await Task.sleep(for: .milliseconds(10)) }
                    guard await inFlight.acquire() else { return }
                    arrivals.yield((bytes, .now))
                }
            }
            for await chunk in chunks {
                while mode == .stalled { try await Task.sleep(for: .milliseconds(10)) }
                if case .delayed(let delay) = mode { try await Task.sleep(until: chunk.at + delay, clock: .continuous) }
                guard mode != .refusing else {
                    reader.cancelAll()
                    return
                }
                try await to.write(chunk.bytes)
                inFlight.release()
            }
            try await reader.waitForAll()
        }
    }
}
