import FlashCore
import Hummingbird

extension Parameters {
    /// The path parameter `name`, percent-decoded: `/products/caf%C3%A9` names `café`, the id a
    /// JSON body would spell. Hummingbird hands parameters over as they are in the URL; a segment
    /// whose escapes are not UTF-8, or that decodes to a control character, is refused (400)
    /// rather than matched raw.
    func decoded(_ name: String) throws -> String {
        let raw = try require(name)
        do {
            return try PathSegment.decode(raw)
        } catch .notUTF8 {
            throw APIError.badRequest("invalid_path", "the path's '\(name)' is not valid percent-encoded UTF-8")
        } catch .controlCharacter {
            throw APIError.badRequest("invalid_path", "the path's '\(name)' must not hold control characters")
        }
    }
}
