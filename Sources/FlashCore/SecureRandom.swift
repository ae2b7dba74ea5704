#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Random bits from the operating system's CSPRNG, read 4 KiB at a time (`/dev/urandom`, the
/// same source getrandom(2) reads): as unpredictable as
/// `SystemRandomNumberGenerator` (order ids are unguessable, and receipts must be), without its
/// system call per 8 bytes.
///
/// Why: order and message ids take two words each, and the accept path makes two or three ids
/// per order; sampled under load, `SystemRandomNumberGenerator`'s `getrandom` calls were ~9% of
/// the API process's busy samples. Hand-written: the standard library has no bulk or buffered
/// source, and swift-crypto exposes none outside its key types. Each word is handed out once;
/// the buffer is shared under a lock (nothing here forks).
public struct SecureRandom: RandomNumberGenerator, Sendable {
    public init() {}

    public mutating func next() -> UInt64 {
        RandomPool.shared.next()
    }
}

/// The shared buffer behind ``SecureRandom``.
final class RandomPool: Sendable {
    static let shared = RandomPool()
    private static let words = 512

    private struct State {
        var buffer = [UInt64](repeating: 0, count: RandomPool.words)
        var used = RandomPool.words
    }

    private let state = Mutex(State())

    func next() -> UInt64 {
        state.withLock { state in
            if state.used == state.buffer.count {
                Self.fill(&state.buffer)
                state.used = 0
            }
            defer { state.used += 1 }
            return state.buffer[state.used]
        }
    }

    /// The kernel's CSPRNG as a file (getrandom(2) is not in Swift's Glibc module), opened once.
    private static let urandom: Int32 = {
        #if canImport(Glibc)
        return open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        #else
        return -1
        #endif
    }()

    private static func fill(_ buffer: inout [UInt64]) {
        buffer.withUnsafeMutableBytes { bytes in
            var offset = 0
            #if canImport(Glibc)
            while urandom >= 0, offset < bytes.count {
                let got = read(urandom, bytes.baseAddress! + offset, bytes.count - offset)
                if got > 0 { offset += got } else if got == 0 || errno != EINTR { break }
            }
            #else
            arc4random_buf(bytes.baseAddress!, bytes.count)
            offset = bytes.count
            #endif
            // No /dev/urandom (a bare chroot): the standard library's source, a word at a time.
            var system = SystemRandomNumberGenerator()
            while offset < bytes.count {
                bytes[offset] = UInt8(truncatingIfNeeded: system.next())
                offset += 1
            }
        }
    }
}
