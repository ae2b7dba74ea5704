import Foundation

/// The database file and its WAL and shared-memory files are the owner's alone (0600), whatever
/// the umask: they hold customers' orders, and the payment ledger. SQLite creates the `-wal` and
/// `-shm` files with the database file's permissions, so the file is created 0600 before SQLite
/// opens it, and an existing one (with its companions) that others could read is narrowed to
/// 0600 when this process owns it.
enum PrivateFiles {
    /// The permissions of every file of the database.
    static let mode: mode_t = 0o600

    /// Creates `path` owner-only if it does not exist, and narrows the database's files to
    /// owner-only. A path SQLite handles itself (`:memory:`, a `file:` URI) is left alone; a
    /// file that cannot be created here is left for SQLite to report.
    static func prepare(_ path: String) {
        guard !path.isEmpty, path != ":memory:", !path.hasPrefix("file:") else { return }
        let descriptor = open(path, O_CREAT | O_RDWR | O_CLOEXEC, mode)
        if descriptor >= 0 { close(descriptor) }
        for file in [path, path + "-wal", path + "-shm"] {
            var info = stat()
            guard stat(file, &info) == 0, info.st_uid == getuid(), info.st_mode & 0o077 != 0 else { continue }
            chmod(file, info.st_mode & 0o700)
        }
    }
}
