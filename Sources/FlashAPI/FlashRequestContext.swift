import Hummingbird
import NIOCore

/// The request context of the flashsale API: Hummingbird's core context, the client's address
/// (admin routes answer only to loopback when no admin token is set), and a 64 KiB body limit.
public struct FlashRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The connection's peer.
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }

    /// Largest request body: 64 KiB (413 past it).
    public var maxUploadSize: Int { 64 * 1024 }
}
