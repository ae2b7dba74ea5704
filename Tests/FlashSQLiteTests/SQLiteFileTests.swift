import FlashCore
@testable import FlashSQLite
import Foundation
import Testing
import FlashTestSupport

/// The database's files hold customers' orders and the payment ledger: owner-only (issue 25).
@Suite("SQLite files", .serialized)
struct SQLiteFileTests {
    static func mode(_ path: String) -> mode_t? {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mode & 0o777 : nil
    }

    @Test func theDatabaseItsWALAndItsSharedMemoryAreOwnerOnlyWhateverTheUmask() async throws {
        let path = TemporaryFile.path("private")
        // As a user with `umask 000` would start it.
        let previous = umask(0)
        let database: SQLiteDatabase
        do {
            database = try SQLiteDatabase(path: path)
            try await database.write { db in try db.execute(sql: "CREATE TABLE t (x)") }
        } catch {
            umask(previous)
            throw error
        }
        umask(previous)
        for file in [path, path + "-wal", path + "-shm"] {
            #expect(Self.mode(file) == 0o600, "\(file): \(String(Self.mode(file) ?? 0, radix: 8))")
        }
        try database.close()
        // A file made readable by others (an old version, a copy) is narrowed when opened again.
        chmod(path, 0o644)
        let reopened = try SQLiteDatabase(path: path)
        #expect(Self.mode(path) == 0o600)
        try reopened.close()
    }
}
