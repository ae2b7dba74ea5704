import FlashCore
import Foundation

/// The secret the admin routes (restock, prices, purge) need, always: `Authorization: Bearer
/// <secret>`. Trusting clients by their address would open them to every request behind a
/// proxy or sidecar on the same host.
///
/// Taken from, in order: `--admin-token` or `FLASHSALE_ADMIN_TOKEN` (the environment keeps it
/// out of `ps`), `--admin-token-file` or `FLASHSALE_ADMIN_TOKEN_FILE`; else the file
/// `flashsale.admin-token` beside the database file, created owner-only (0600) with a random
/// secret when it does not exist. Processes sharing a database file (one host) share it.
public enum AdminSecret {
    /// A resolved secret, and where it came from (for the start-up line; never the secret).
    public struct Resolved: Sendable {
        public var token: String
        public var source: String
    }

    /// The file the secret is generated into when none is configured: beside `dataPath`.
    public static func defaultFile(forData dataPath: String) -> String {
        URL(fileURLWithPath: dataPath).deletingLastPathComponent().appendingPathComponent("flashsale.admin-token").path
    }

    /// Resolves the secret (see ``AdminSecret``).
    public static func resolve(token: String?, file: String?, dataPath: String) throws -> Resolved {
        if let token, !token.isEmpty { return Resolved(token: token, source: "given") }
        if let file, !file.isEmpty { return Resolved(token: try read(file), source: "read from \(file)") }
        let path = defaultFile(forData: dataPath)
        if FileManager.default.fileExists(atPath: path) { return Resolved(token: try read(path), source: "read from \(path)") }
        var generator = SecureRandom()
        let token = (0..<4).map { _ in String(generator.next(), radix: 16).leftPadded(to: 16) }.joined()
        // O_EXCL: two processes starting at once on the same file keep the one written first.
        let descriptor = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            if errno == EEXIST { return Resolved(token: try read(path), source: "read from \(path)") }
            throw AdminSecretError("cannot create the admin token file \(path): \(String(cString: strerror(errno))); set FLASHSALE_ADMIN_TOKEN or --admin-token-file")
        }
        let bytes = Array((token + "\n").utf8)
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        fsync(descriptor)
        close(descriptor)
        guard written == bytes.count else { throw AdminSecretError("cannot write the admin token file \(path)") }
        return Resolved(token: token, source: "generated into \(path) (owner-only)")
    }

    /// The secret in `path`: its first line, trimmed. A file others may read is refused.
    static func read(_ path: String) throws -> String {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw AdminSecretError("cannot read the admin token file \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw AdminSecretError("the admin token file \(path) can be read by others (mode \(String(info.st_mode & 0o777, radix: 8))): chmod 600 it")
        }
        guard let text = FileManager.default.contents(atPath: path).map({ String(decoding: $0, as: UTF8.self) }) else {
            throw AdminSecretError("cannot read the admin token file \(path)")
        }
        let token = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard !token.isEmpty else { throw AdminSecretError("the admin token file \(path) is empty") }
        return token
    }
}

/// The admin secret cannot be read or made; says which file and what to do.
public struct AdminSecretError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
