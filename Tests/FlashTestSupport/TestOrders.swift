import FlashCore
import FlashOrders

/// New orders for tests: an async order of `customer` for `items` (product, quantity, price).
public func newOrder(_ customer: String, _ items: [(String, Int, Double?)], key: String? = nil, id: String? = nil) -> NewOrder {
    NewOrder(id: id ?? TimeOrderedID.make(), customerID: customer,
             items: items.map { OrderItem(productID: $0.0, quantity: $0.1, price: $0.2) },
             channel: .async, idempotencyKey: key, idChosenByClient: id != nil)
}
