import Foundation

/// Wall-clock time as stored in the databases: integer milliseconds since the Unix epoch.
public enum WallClock {
    /// Now, in milliseconds since 1970-01-01T00:00:00Z.
    public static func nowMillis() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// An ISO 8601 timestamp with milliseconds, UTC, for a stored millisecond time.
    public static func iso8601(millis: Int64) -> String {
        let seconds = millis / 1000
        let fraction = Int(millis % 1000)
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
            Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), fraction)
    }
}
