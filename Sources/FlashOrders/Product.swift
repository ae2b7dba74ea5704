/// A product of the catalog, with its stock in three parts: `stock` (available now), `reserved`
/// (held by orders not yet paid) and `sold`. Their sum only changes when an admin restocks.
public struct Product: Sendable, Hashable {
    public var productID: String
    public var stock: Int
    public var reserved: Int
    public var sold: Int
    public var perCustomerLimit: Int?
    public var price: Double?

    public init(productID: String, stock: Int, reserved: Int = 0, sold: Int = 0, perCustomerLimit: Int? = nil, price: Double? = nil) {
        self.productID = productID
        self.stock = stock
        self.reserved = reserved
        self.sold = sold
        self.perCustomerLimit = perCustomerLimit
        self.price = price
    }
}


/// The product catalog behind the inventory gate.
public protocol Catalog: Sendable {
    /// The product, with its stock split into available, reserved and sold.
    func product(id: String) async throws -> Product?

    /// Products in id order, at most `limit` of them.
    func products(limit: Int) async throws -> [Product]

    /// Creates or replaces a product's settings; `stock` becomes the units available now
    /// (units already reserved or sold stay as they are).
    func putProduct(id: String, stock: Int, perCustomerLimit: Int?, price: Double?) async throws -> Product

    /// Sets the units available now, creating the product (no limit, no price) if needed.
    func setStock(id: String, stock: Int) async throws -> Product
}
