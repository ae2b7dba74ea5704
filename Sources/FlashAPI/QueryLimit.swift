import Hummingbird

extension Request {
    /// The `limit` query parameter of a listing: `defaultValue` when it is absent, otherwise a
    /// whole number in `range`; anything else is refused with 400 `invalid_limit`.
    func limit(default defaultValue: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = uri.queryParameters.get("limit") else { return defaultValue }
        guard let number = Int(text), range.contains(number) else {
            throw APIError.badRequest("invalid_limit", "limit must be a whole number from \(range.lowerBound) to \(range.upperBound), not '\(text)'")
        }
        return number
    }
}
