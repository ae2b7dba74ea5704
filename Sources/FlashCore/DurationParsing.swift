/// Parsing and printing of human-written durations: `3s`, `30ms`, `1.5s`, `2m`, `1h`, `250us`.
///
/// Every duration in flashsale (flags, environment variables, lab scenarios) is written this way,
/// so the seeds' 3-second payment can run as `30ms` and a 3-hour drain as `2m`.
extension Duration {
    /// Parses a duration such as `3s`, `30ms`, `1.5s`, `2m`, `1h`, `500us` or `0`.
    ///
    /// A unit is required: a bare number (`200`) could mean seconds or milliseconds, and a
    /// wrong guess starts a server with a 200-second payment, so only `0` may go without one.
    /// Returns `nil` for anything else, including negative values and values too large to
    /// represent (over ``maxParsed``, about 292 years).
    public init?(parsing text: String) {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        guard !trimmed.isEmpty else { return nil }
        let units: [(suffix: String, seconds: Double)] = [
            ("ms", 1e-3), ("us", 1e-6), ("µs", 1e-6), ("ns", 1e-9),
            ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400),
        ]
        var number = Substring(trimmed)
        var scale: Double?
        for unit in units where trimmed.hasSuffix(unit.suffix) {
            number = trimmed.dropLast(unit.suffix.count)
            scale = unit.seconds
            break
        }
        if scale == nil, Double(number) == 0 { scale = 1 }
        guard let scale else { return nil }
        guard let value = Double(number.trimmingCharacters(in: .whitespaces)),
              value.isFinite, value >= 0
        else { return nil }
        let seconds = value * scale
        // Nanoseconds must fit an Int64 (Int64(_:) traps past it): refuse rather than crash.
        guard seconds <= Self.maxParsed.asSeconds else { return nil }
        self = .nanoseconds(Int64((seconds * 1e9).rounded()))
    }

    /// The forms ``init(parsing:)`` accepts, for error messages.
    public static let acceptedForms = "a number with a unit: 250us, 30ms, 1.5s, 2m, 1h or 1d"

    /// The longest duration ``init(parsing:)`` accepts: 9e9 s (about 285 years), well inside
    /// what `Duration` arithmetic on clocks can add without overflowing.
    public static let maxParsed: Duration = .seconds(9_000_000_000)

    /// The duration in seconds, as a floating-point number.
    public var asSeconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) * 1e-18
    }

    /// The duration in whole milliseconds (rounded down).
    public var asMilliseconds: Int64 {
        let (s, attoseconds) = components
        return s * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// A short human form: `30ms`, `3s`, `1.5s`, `2m`, `1h30m`.
    public var shortDescription: String {
        let ms = Double(asMilliseconds) + Double(components.attoseconds % 1_000_000_000_000_000) * 1e-15
        if ms < 1 { return "\(Int((ms * 1000).rounded()))us" }
        if ms < 1000 { return ms == ms.rounded() ? "\(Int(ms))ms" : "\(ms)ms" }
        let s = ms / 1000
        if s < 60 { return s == s.rounded() ? "\(Int(s))s" : "\(Self.trim(s))s" }
        if s < 3600 { return s.truncatingRemainder(dividingBy: 60) == 0 ? "\(Int(s / 60))m" : "\(Self.trim(s))s" }
        let h = Int(s) / 3600
        let m = (Int(s) % 3600) / 60
        return m == 0 ? "\(h)h" : "\(h)h\(m)m"
    }

    private static func trim(_ value: Double) -> String {
        var text = String(format: "%.3f", value)
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return text
    }
}

import Foundation
