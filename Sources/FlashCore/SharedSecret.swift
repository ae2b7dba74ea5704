import Foundation

/// A secret that processes share through the environment or a file, never only the command
/// line (which `ps` shows to every user of the host): the admin routes' token, the payment
/// gateway's. Resolved from, in order: a value given (an environment variable, or a flag), a
/// file named, else a default file, read if it exists and otherwise (when allowed) created
/// owner-only with a random secret.
public enum SharedSecret {
    /// A resolved secret, and where it came from (for a start-up line; never the secret).
    public struct Resolved: Sendable {
        public var token: String
        public var source: String
    }

    /// Resolves `what` (named in errors, e.g. "admin token").
    ///
    /// - Parameters:
    ///   - token: a value given; used when not empty.
    ///   - file: a file named for it; its first line, trimmed.
    ///   - defaultFile: read if it exists; else created with a random secret when `generate`.
    ///   - generate: whether a missing default file is created (else nil is returned).
    ///   - hint: what to set instead, for errors ("set FLASHSALE_ADMIN_TOKEN or --admin-token-file").
    public static func resolve(_ what: String, token: String?, file: String?, defaultFile: String, generate: Bool,
                               hint: String) throws -> Resolved? {
        if let token, !token.isEmpty { return Resolved(token: token, source: "given") }
        if let file, !file.isEmpty { return Resolved(token: try read(what, file), source: "read from \(file)") }
        if FileManager.default.fileExists(atPath: defaultFile) {
            return Resolved(token: try read(what, defaultFile), source: "read from \(defaultFile)")
        }
        guard generate else { return nil }
        var generator = SecureRandom()
        let token = (0..<4).map { _ in
            let hex = String(generator.next(), radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
        // Written whole under a name of its own, then linked into place: processes starting at
        // once on the same file keep the one linked first, and none reads a half-written file.
        let temporary = defaultFile + ".\(getpid()).\(generator.next() % 1_000_000)"
        let descriptor = open(temporary, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw SecretFileError("cannot create the \(what) file \(defaultFile): \(String(cString: strerror(errno))); \(hint)")
        }
        defer { unlink(temporary) }
        let bytes = Array((token + "\n").utf8)
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        fsync(descriptor)
        close(descriptor)
        guard written == bytes.count else { throw SecretFileError("cannot write the \(what) file \(defaultFile); \(hint)") }
        guard link(temporary, defaultFile) == 0 else {
            if errno == EEXIST { return Resolved(token: try read(what, defaultFile), source: "read from \(defaultFile)") }
            throw SecretFileError("cannot create the \(what) file \(defaultFile): \(String(cString: strerror(errno))); \(hint)")
        }
        return Resolved(token: token, source: "generated into \(defaultFile) (owner-only)")
    }

    /// The secret in `path`: its first line, trimmed. A file others may read is refused.
    static func read(_ what: String, _ path: String) throws -> String {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw SecretFileError("cannot read the \(what) file \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw SecretFileError("the \(what) file \(path) can be read by others (mode \(String(info.st_mode & 0o777, radix: 8))): chmod 600 it")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw SecretFileError("cannot read the \(what) file \(path)") }
        let text = String(decoding: data, as: UTF8.self)
        let token = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard !token.isEmpty else { throw SecretFileError("the \(what) file \(path) is empty") }
        return token
    }

    /// `name` in the directory of `path` (a database file's companion).
    public static func file(_ name: String, beside path: String) -> String {
        URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent(name).path
    }
}

/// A secret's file cannot be read or made; says which file and what to do.
public struct SecretFileError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Compares a presented secret with the expected one.
public enum SecretComparison {
    /// Whether `a` equals `b`, without leaking through timing how much of it matched.
    public static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var difference = UInt8(x.count == y.count ? 0 : 1)
        for index in 0..<max(x.count, y.count) {
            difference |= (index < x.count ? x[index] : 0) ^ (index < y.count ? y[index] : 0)
        }
        return difference == 0
    }
}
