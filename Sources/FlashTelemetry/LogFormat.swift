import Logging

/// How a process writes its logs (`--log-format`).
public enum LogFormat: String, Sendable, CaseIterable {
    /// swift-log's plain-text lines (`StreamLogHandler`), for people at a terminal.
    case text
    /// One JSON object per line (``JSONLogHandler``), for log shippers.
    case json

    /// Bootstraps swift-log for the whole process (once) to standard error at `level`, and
    /// returns the process's logger.
    public func bootstrap(level: Logger.Level, label: String = "flashsale") -> Logger {
        LoggingSystem.bootstrap { label in
            switch self {
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            case .json:
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}
