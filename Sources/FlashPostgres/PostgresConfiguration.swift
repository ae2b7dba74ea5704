import FlashCore
import Foundation

extension PostgresDatabase {
    /// Where the database is and how to use it.
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var username: String
        public var password: String?
        public var database: String
        /// The schema flashsale's tables live in (`?schema=` in the URL; PostgreSQL's default when nil).
        public var schema: String?
        /// TLS: `?sslmode=disable|prefer|require` (default `prefer`, as libpq).
        public var sslMode: String
        /// Connections in this process's pool.
        public var maxConnections: Int
        /// The longest a call waits for the database (a connection, then its statements) before
        /// it fails with ``BackendUnavailable``.
        public var operationTimeout: Duration
        /// Where the stores read "now" for the times they keep (leases, delays, retention,
        /// holds): the wall clock unless a test moves time itself. Every process sharing the
        /// database must read the same wall clock, as they do with ``TimeSource/system``.
        public var time: TimeSource = .system

        public init(host: String = "127.0.0.1", port: Int = 5432, username: String = "postgres", password: String? = nil,
                    database: String = "postgres", schema: String? = nil, sslMode: String = "prefer",
                    maxConnections: Int = 16, operationTimeout: Duration = .seconds(3)) {
            self.host = host
            self.port = port
            self.username = username
            self.password = password
            self.database = database
            self.schema = schema
            self.sslMode = sslMode
            self.maxConnections = maxConnections
            self.operationTimeout = operationTimeout
        }

        /// Reads `postgres://user:password@host:port/database?schema=…&sslmode=…&pool=…`
        /// (`postgresql://` too), as libpq and postgres-nio users write it.
        public init(url text: String) throws {
            guard let url = URLComponents(string: text), let scheme = url.scheme, ["postgres", "postgresql"].contains(scheme),
                  let host = url.host, !host.isEmpty
            else { throw DatabaseURLError(message: "expected postgres://user:password@host:port/database") }
            self.init(host: host, port: url.port ?? 5432,
                      username: url.user.flatMap { $0.removingPercentEncoding } ?? "postgres",
                      password: url.password.flatMap { $0.removingPercentEncoding })
            let path = url.path.hasPrefix("/") ? String(url.path.dropFirst()) : url.path
            database = path.isEmpty ? username : (path.removingPercentEncoding ?? path)
            for item in url.queryItems ?? [] {
                switch item.name {
                case "schema", "search_path": schema = item.value
                case "sslmode": sslMode = item.value ?? "prefer"
                case "pool":
                    guard let value = item.value.flatMap(Int.init), value >= 2 else { throw DatabaseURLError(message: "pool must be a number ≥ 2") }
                    maxConnections = value
                default: break
                }
            }
            guard ["disable", "prefer", "require"].contains(sslMode) else { throw DatabaseURLError(message: "sslmode must be disable, prefer or require") }
            if let schema, schema.isEmpty || !schema.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) {
                throw DatabaseURLError(message: "schema must be letters, digits and underscores")
            }
        }

        /// The URL without its password, for logs.
        public var redacted: String {
            "postgres://\(username)@\(host):\(port)/\(database)" + (schema.map { "?schema=\($0)" } ?? "")
        }
    }

    /// A malformed `--database` URL.
    public struct DatabaseURLError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { "invalid database URL: \(message)" }
    }
}
