import FlashCore

/// Why an order request was refused before anything was stored. Maps to HTTP 400.
public struct OrderValidationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable, machine-readable code (`invalid_json`, `missing_field`, `invalid_quantity`…).
    public var code: String
    /// What is wrong, for a person.
    public var message: String

    public init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

/// A validated order request, decoded leniently as the seeds' clients differ:
/// `{"customer_id": 1234, "items": [{"product_id": "PROD-001", "quantity": 2, "price": 49.99}]}`.
///
/// Unknown fields are ignored; `customer_id` may be a number or a string; `item_id` is accepted
/// for `product_id`; `price` may be missing; `quantity` defaults to 1; a client `order_id` makes
/// the request idempotent.
public struct OrderRequest: Sendable, Hashable {
    public static let maxItems = 100
    public static let maxQuantity = 10_000
    public static let maxIdentifierLength = 128

    public var customerID: String
    public var items: [OrderItem]
    /// The client's own order id, if sent.
    public var orderID: String?

    public init(customerID: String, items: [OrderItem], orderID: String? = nil) {
        self.customerID = customerID
        self.items = items
        self.orderID = orderID
    }

    /// Decodes and validates a request body.
    public static func decode(_ bytes: some Collection<UInt8>) throws(OrderValidationError) -> OrderRequest {
        let value: JSONValue
        do {
            value = try JSONValue.parse(bytes)
        } catch {
            throw OrderValidationError("invalid_json", "the body is not valid JSON (\(error.reason) at byte \(error.offset))")
        }
        guard let object = value.object else {
            throw OrderValidationError("invalid_json", "the body must be a JSON object")
        }
        return try validate(object)
    }

    /// Validates an already-parsed JSON object.
    public static func validate(_ object: [String: JSONValue]) throws(OrderValidationError) -> OrderRequest {
        guard let rawCustomer = present(object["customer_id"] ?? object["customerId"] ?? object["userId"]) else {
            throw OrderValidationError("missing_field", "customer_id is required")
        }
        let customerID = try identifier(rawCustomer, field: "customer_id")
        guard let rawItems = present(object["items"]) else {
            throw OrderValidationError("missing_field", "items is required")
        }
        guard case let .array(list) = rawItems else {
            throw OrderValidationError("invalid_field", "items must be an array")
        }
        guard !list.isEmpty else { throw OrderValidationError("empty_items", "items must hold at least one item") }
        guard list.count <= maxItems else {
            throw OrderValidationError("too_many_items", "an order holds at most \(maxItems) items, not \(list.count)")
        }
        var items: [OrderItem] = []
        items.reserveCapacity(list.count)
        for (index, entry) in list.enumerated() {
            guard let item = entry.object else {
                throw OrderValidationError("invalid_field", "items[\(index)] must be an object")
            }
            items.append(try validateItem(item, index: index))
        }
        var orderID: String?
        if let raw = present(object["order_id"]) {
            orderID = try identifier(raw, field: "order_id")
            // `/orders/async` and `/orders/sync` are routes: an order so named could never be looked up.
            if orderID == "async" || orderID == "sync" {
                throw OrderValidationError("invalid_field", "order_id '\(orderID!)' is reserved (it names a route)")
            }
        }
        return OrderRequest(customerID: customerID, items: items, orderID: orderID)
    }

    private static func validateItem(_ item: [String: JSONValue], index: Int) throws(OrderValidationError) -> OrderItem {
        guard let rawProduct = present(item["product_id"] ?? item["item_id"] ?? item["productId"]) else {
            throw OrderValidationError("missing_field", "items[\(index)].product_id is required")
        }
        let productID = try identifier(rawProduct, field: "items[\(index)].product_id")
        var quantity = 1
        if let raw = present(item["quantity"]) {
            guard case let .number(value, integer) = raw else {
                throw OrderValidationError("invalid_quantity", "items[\(index)].quantity must be a whole number")
            }
            guard let whole = integer ?? Int64(exactly: value) else {
                throw OrderValidationError("invalid_quantity", "items[\(index)].quantity must be a whole number, not \(value)")
            }
            guard (1...Int64(maxQuantity)).contains(whole) else {
                throw OrderValidationError("invalid_quantity", "items[\(index)].quantity must be 1 to \(maxQuantity), not \(whole)")
            }
            quantity = Int(whole)
        }
        var price: Double?
        if let raw = present(item["price"]) {
            guard case let .number(value, _) = raw, value.isFinite else {
                throw OrderValidationError("invalid_price", "items[\(index)].price must be a number")
            }
            guard value >= 0, value <= 1e9 else {
                throw OrderValidationError("invalid_price", "items[\(index)].price must be 0 to 1e9, not \(value)")
            }
            price = value
        }
        return OrderItem(productID: productID, quantity: quantity, price: price)
    }

    /// An id sent as a string or an integer: non-empty, at most 128 bytes, no control characters.
    public static func identifier(_ raw: JSONValue, field: String) throws(OrderValidationError) -> String {
        let text: String
        switch raw {
        case let .string(string): text = string
        case let .number(_, integer?): text = String(integer)
        default: throw OrderValidationError("invalid_field", "\(field) must be a string or an integer")
        }
        guard !text.isEmpty, text.utf8.count <= maxIdentifierLength else {
            throw OrderValidationError("invalid_field", "\(field) must be 1 to \(maxIdentifierLength) bytes")
        }
        guard !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw OrderValidationError("invalid_field", "\(field) must not hold control characters")
        }
        return text
    }

    /// A member that is there and not `null`.
    static func present(_ value: JSONValue?) -> JSONValue? {
        if let value, value != .null { return value }
        return nil
    }
}
