/// The release of flashsale this binary is: `flashsale --version`, `GET /`, and the OpenAPI
/// document's `info.version` (a test keeps the two equal).
public enum FlashVersion {
    /// Semantic version of this release.
    public static let current = "1.0.0"
}
