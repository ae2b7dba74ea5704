import FlashCore
import Foundation
import Synchronization

/// A request body or header value with variables, rendered afresh for every request, so a
/// load test can send its own catalog's orders rather than the built-in random ones:
///
/// - `{{counter}}`: 1, 2, 3… across the whole run (one sequence for every template of a run);
/// - `{{uuid}}`: a random UUID (an `Idempotency-Key`, an order id);
/// - `{{customer}}`: a random customer number, 1…100000;
/// - `{{product}}`: a product from the run's list (`--products`), at random;
/// - `{{random:A:B}}`: a random whole number from A to B;
/// - `{{env:NAME}}`: the environment variable NAME, read once when the template is made.
///
/// Written here rather than taken from a template package: none is in the mirror, and six
/// variables need no more than a split on `{{…}}`.
public struct RequestTemplate: Sendable {
    enum Part: Sendable, Equatable {
        case text(String)
        case counter, uuid, customer, product
        case random(Int, Int)
    }

    let parts: [Part]

    /// Parses `text`; throws a ``TemplateError`` naming an unknown or malformed variable.
    public init(_ text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(TemplateError) {
        var parts: [Part] = []
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            if open.lowerBound > rest.startIndex { parts.append(.text(String(rest[..<open.lowerBound]))) }
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw TemplateError("'{{' without its '}}' in \(text)")
            }
            let name = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            switch name {
            case "counter": parts.append(.counter)
            case "uuid": parts.append(.uuid)
            case "customer": parts.append(.customer)
            case "product": parts.append(.product)
            default:
                let fields = name.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
                if fields.count == 3, fields[0] == "random", let low = Int(fields[1]), let high = Int(fields[2]), low <= high {
                    parts.append(.random(low, high))
                } else if fields.count >= 2, fields[0] == "env" {
                    let variable = fields.dropFirst().joined(separator: ":")
                    guard let value = environment[variable] else { throw TemplateError("{{env:\(variable)}}: \(variable) is not set") }
                    parts.append(.text(value))
                } else {
                    throw TemplateError("unknown variable {{\(name)}}; use {{counter}}, {{uuid}}, {{customer}}, {{product}}, {{random:A:B}} or {{env:NAME}}")
                }
            }
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { parts.append(.text(String(rest))) }
        self.parts = parts
    }

    /// Whether the template uses `{{product}}`.
    public var usesProduct: Bool { parts.contains(.product) }

    /// The text for one request.
    public func render(_ context: TemplateContext) -> String {
        var text = ""
        for part in parts {
            switch part {
            case let .text(value): text += value
            case .counter: text += String(context.nextCounter())
            case .uuid: text += UUID().uuidString.lowercased()
            case .customer: text += String(Int.random(in: 1...100_000))
            case .product: text += context.products.randomElement() ?? ""
            case let .random(low, high): text += String(Int.random(in: low...high))
            }
        }
        return text
    }
}

/// What a run's templates share: the counter and the product list.
public final class TemplateContext: Sendable {
    private let counter = Atomic<Int>(0)
    /// The products `{{product}}` picks from.
    public let products: [String]

    public init(products: [String]) {
        self.products = products
    }

    /// The next value of `{{counter}}`, from 1.
    func nextCounter() -> Int {
        counter.add(1, ordering: .relaxed).newValue
    }
}

/// A template that cannot be used, with a message for the user.
public struct TemplateError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
