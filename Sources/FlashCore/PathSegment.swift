import Foundation

/// One segment of a URL path as an identifier: percent-decoded, the way the API reads an id it
/// was sent in a path (`/orders/{id}`; the gateway's are decoded by its generated server).
/// Hummingbird hands path parameters over as they are in the URL, so a
/// hop that forgot to decode looked up another key than the one its client escaped: an order
/// "a b" was voided as "a%20b" while its charge stood.
public enum PathSegment {
    /// Why a segment is not an identifier.
    public enum Refusal: Error, Sendable, Equatable {
        /// The escapes are not valid percent-encoded UTF-8.
        case notUTF8
        /// It decodes to a control character, which no identifier holds.
        case controlCharacter
    }

    /// `raw` percent-decoded; refused when its escapes are not UTF-8 or when it decodes to a
    /// control character (bodies refuse those too, and PostgreSQL refuses NUL in text).
    public static func decode(_ raw: String) throws(Refusal) -> String {
        guard raw.contains("%") else { return raw }
        guard let text = raw.removingPercentEncoding else { throw .notUTF8 }
        guard !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else { throw .controlCharacter }
        return text
    }
}
