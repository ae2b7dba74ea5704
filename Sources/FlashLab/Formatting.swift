import Foundation

/// Human forms of the lab's figures.
public enum Format {
    /// `2h 59m`, `3m 20s`, `12.5 s`, `340 ms`, `∞`.
    public static func seconds(_ value: Double) -> String {
        guard value.isFinite else { return "∞" }
        if value < 1 { return "\(Int((value * 1000).rounded())) ms" }
        if value < 60 { return String(format: "%.1f s", value) }
        let total = Int(value.rounded())
        if total < 3600 { return "\(total / 60)m \(total % 60)s" }
        if total < 86_400 * 2 { return "\(total / 3600)h \((total % 3600) / 60)m" }
        return String(format: "%.1f days", value / 86_400)
    }

    /// A rate or count with sensible precision: `0.33`, `60`, `3,580`, `1,000,000`.
    public static func number(_ value: Double) -> String {
        guard value.isFinite else { return "∞" }
        if abs(value) < 10, value != value.rounded() { return String(format: "%.2f", value) }
        if abs(value) < 100, value != value.rounded() { return String(format: "%.1f", value) }
        let formatter = NumberFormatter()
        formatter.numberStyle = .decimal
        formatter.maximumFractionDigits = 0
        return formatter.string(from: NSNumber(value: value.rounded())) ?? "\(Int(value.rounded()))"
    }
}
