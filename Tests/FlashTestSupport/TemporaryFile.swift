import Foundation

/// Paths for databases a test makes and throws away.
public enum TemporaryFile {
    /// A fresh path in a fresh temporary directory.
    public static func path(_ stem: String) -> String {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("flashsale-tests-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory.appendingPathComponent("\(stem).db").path
    }
}
