/// Rates written `60/s`, `600`, `3600/m`, `1.5k/s`, `1M/s` (per second unless a unit follows).
public enum RateParsing {
    public static func perSecond(_ text: String) -> Double? {
        var body = Substring(text.trimmingCharacters(in: .whitespaces).lowercased())
        var divisor = 1.0
        if let slash = body.firstIndex(of: "/") {
            switch body[body.index(after: slash)...] {
            case "s", "sec", "second": divisor = 1
            case "m", "min", "minute": divisor = 60
            case "h", "hour": divisor = 3600
            default: return nil
            }
            body = body[..<slash]
        }
        var scale = 1.0
        if body.hasSuffix("k") { scale = 1e3; body = body.dropLast() } else if body.hasSuffix("m") { scale = 1e6; body = body.dropLast() }
        guard let value = Double(body), value.isFinite, value >= 0 else { return nil }
        return value * scale / divisor
    }
}

import Foundation
