import Foundation
import Hummingbird

extension Parameters {
    /// The path parameter `name`, percent-decoded: `/products/caf%C3%A9` names `café`, the id a
    /// JSON body would spell. Hummingbird hands parameters over as they are in the URL; a segment
    /// whose escapes are not UTF-8, or that decodes to a control character, is refused (400)
    /// rather than matched raw.
    func decoded(_ name: String) throws -> String {
        let raw = try require(name)
        guard raw.contains("%") else { return raw }
        guard let text = raw.removingPercentEncoding else {
            throw APIError.badRequest("invalid_path", "the path's '\(name)' is not valid percent-encoded UTF-8")
        }
        // No id holds a control character (bodies refuse them too); PostgreSQL refuses NUL in text.
        guard !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw APIError.badRequest("invalid_path", "the path's '\(name)' must not hold control characters")
        }
        return text
    }
}
