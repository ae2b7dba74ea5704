import ArgumentParser
import NIOCore
import NIOPosix

/// Checks, before anything is opened or created, that a server can listen where it was told to.
///
/// The server binds only once its service group runs, after the database is open and the
/// workers have started; a port in use then ended the process with NIO's bare `bind(…)`
/// error. Binding once here (with NIO, as the server will: `SO_REUSEADDR` on, so a port in
/// TIME_WAIT is not taken for one in use) names the address and what to do first.
enum ListenCheck {
    /// Throws a clear error when `host:port` cannot be listened on; port 0 always can.
    static func ensureFree(host: String, port: Int, flag: String = "--port") async throws {
        guard port != 0 else { return }
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            throw ValidationError(describe(error, host: host, port: port, flag: flag))
        }
        try? await channel.close()
    }

    /// The message for a failed bind at `host:port`.
    static func describe(_ error: any Error, host: String, port: Int, flag: String = "--port") -> String {
        if let io = error as? IOError {
            switch io.errnoCode {
            case EADDRINUSE:
                return "port \(port) on \(host) is already in use (another flashsale, or another server); stop it, choose another \(flag), or give \(flag) 0 for any free port"
            case EACCES:
                return "not allowed to listen on port \(port) on \(host) (ports below 1024 need privileges); choose a port of 1024 or more, or \(flag) 0"
            case EADDRNOTAVAIL:
                return "cannot listen on \(host): it is not an address of this machine; use 127.0.0.1, 0.0.0.0 or one of its addresses"
            default:
                break
            }
        }
        return "cannot listen on \(host):\(port): \(error)"
    }

    /// A bind error thrown while the server starts, described as ``describe(_:host:port:flag:)`` does; other errors unchanged.
    static func translate(_ error: any Error, host: String, port: Int, flag: String = "--port") -> any Error {
        guard let io = error as? IOError, [EADDRINUSE, EACCES, EADDRNOTAVAIL].contains(io.errnoCode) else { return error }
        return StartupError(describe(io, host: host, port: port, flag: flag))
    }
}

/// An error that stops a command, with a message meant for its user (printed as `Error: …`).
struct StartupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
