import ArgumentParser
import FlashCore
import Foundation

/// Resolves a setting: the command-line flag, else its `FLASHSALE_…` environment variable, else the default.
///
/// Written by hand rather than with swift-configuration (considered, 1.4 is in the mirror):
/// ArgumentParser already parses, range-checks and documents every flag in the option groups
/// (Options.swift), and the fallback is one environment look-up per flag. swift-configuration
/// would be a second place that names every key, and its providers (files, reloading) have no
/// use here yet; when a configuration file is wanted, it is the way to add it.
enum Settings {
    static func value(_ flag: String?, env name: String) -> String? {
        if let flag { return flag }
        if let value = ProcessInfo.processInfo.environment[name], !value.isEmpty { return value }
        return nil
    }

    static func string(_ flag: String?, env: String, default fallback: String) -> String {
        value(flag, env: env) ?? fallback
    }

    static func int(_ flag: String?, env: String, default fallback: Int, range: ClosedRange<Int>? = nil) throws -> Int {
        guard let text = value(flag, env: env) else { return fallback }
        guard let number = Int(text) else {
            throw ValidationError("\(source(flag, env: env)) must be a whole number\(range.map { " in \($0.lowerBound)...\($0.upperBound)" } ?? ""), not '\(text)'")
        }
        if let range, !range.contains(number) {
            throw ValidationError("\(source(flag, env: env)) is out of range: \(number) is not in \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    /// What set a value, for an error: the flag when it was given (`--workers`), else the
    /// environment variable it came from (`FLASHSALE_WORKERS (environment)`).
    static func source(_ flag: String?, env: String) -> String {
        flag != nil ? flagName(env) : "\(env) (from the environment)"
    }

    /// `--sync-timeout` for `FLASHSALE_SYNC_TIMEOUT`.
    static func flagName(_ env: String) -> String {
        env.lowercased().replacingOccurrences(of: "flashsale_", with: "--").replacingOccurrences(of: "_", with: "-")
    }

    static func double(_ flag: String?, env: String, default fallback: Double, range: ClosedRange<Double>) throws -> Double {
        guard let text = value(flag, env: env) else { return fallback }
        guard let number = Double(text), range.contains(number) else {
            throw ValidationError("\(source(flag, env: env)) must be a number in \(range.lowerBound)...\(range.upperBound), not '\(text)'")
        }
        return number
    }

    /// A duration flag within `range` (a value too large to represent is refused, never a crash).
    static func duration(_ flag: String?, env: String, default fallback: Duration, range: ClosedRange<Duration>) throws -> Duration {
        guard let text = value(flag, env: env) else { return fallback }
        guard let duration = Duration(parsing: text) else {
            throw ValidationError("\(source(flag, env: env)) must be \(Duration.acceptedForms), not '\(text)'")
        }
        guard range.contains(duration) else {
            throw ValidationError("\(source(flag, env: env)) must be from \(range.lowerBound.shortDescription) to \(range.upperBound.shortDescription), not '\(text)'")
        }
        return duration
    }

    /// A range of durations written `100ms..500ms` (or one duration), in seconds.
    static func durationRange(_ text: String, option: String) throws -> ClosedRange<Double> {
        let bounds = text.components(separatedBy: "..")
        guard bounds.count <= 2, let low = bounds.first.flatMap({ Duration(parsing: $0) }),
              let high = (bounds.count > 1 ? Duration(parsing: bounds[1]) : low), low <= high
        else { throw ValidationError("\(option) must be like 100ms..500ms or 1s (every duration with a unit: ms, s, m), not '\(text)'") }
        return low.asSeconds...high.asSeconds
    }

    static func flag(_ flag: Bool, env: String) -> Bool {
        if flag { return true }
        guard let text = ProcessInfo.processInfo.environment[env]?.lowercased() else { return false }
        return ["1", "true", "yes", "on"].contains(text)
    }
}
