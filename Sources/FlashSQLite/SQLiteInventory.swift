import FlashCore
import FlashOrders
import GRDB

/// The inventory gate's storage primitives on SQLite; the rules are ``InventoryRules``.
///
/// Atomicity: they run in the transaction that stores (or settles) the order, and SQLite runs
/// one writer at a time across every process on the file (`BEGIN IMMEDIATE`), so the level read
/// by ``level(_:productID:customerID:)`` cannot change before the reservation commits.
enum SQLiteInventory {
    /// Reserves every item's units for `customerID` by the gate's rules, all or nothing (the
    /// caller's savepoint rolls back on a throw). Returns the reservation to keep with the
    /// order and the catalog prices found.
    static func reserve(_ db: Database, items: [OrderItem], customerID: String, strictCatalog: Bool) throws -> (Reservation, [String: Double]) {
        var reservation = Reservation()
        var prices: [String: Double] = [:]
        for wanted in InventoryRules.wantedUnits(items) {
            let level = try level(db, productID: wanted.productID, customerID: customerID)
            if let price = level?.price { prices[wanted.productID] = price }
            guard try InventoryRules.decide(productID: wanted.productID, quantity: wanted.quantity, level: level, strictCatalog: strictCatalog),
                  let level
            else { continue }
            try db.cachedStatement(sql: """
                UPDATE fs_products SET stock = stock - ?1, reserved = reserved + ?1 WHERE product_id = ?2
                """).execute(arguments: [wanted.quantity, wanted.productID])
            if level.perCustomerLimit != nil {
                try db.cachedStatement(sql: """
                    INSERT INTO fs_customer_purchases (product_id, customer_id, quantity) VALUES (?1, ?2, ?3)
                    ON CONFLICT(product_id, customer_id) DO UPDATE SET quantity = quantity + ?3
                    """).execute(arguments: [wanted.productID, customerID, wanted.quantity])
            }
            reservation.units.append(wanted)
        }
        return (reservation, prices)
    }

    /// A product's level for one customer; nil when it is not in the catalog.
    static func level(_ db: Database, productID: String, customerID: String) throws -> StockLevel? {
        guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT stock, per_customer_limit, price FROM fs_products WHERE product_id = ?"),
                                         arguments: [productID])
        else { return nil }
        let limit: Int? = row[1]
        let bought = limit == nil ? 0 : try Int.fetchOne(db.cachedStatement(sql: """
            SELECT quantity FROM fs_customer_purchases WHERE product_id = ? AND customer_id = ?
            """), arguments: [productID, customerID]) ?? 0
        return StockLevel(stock: row[0], perCustomerLimit: limit, price: row[2], boughtByCustomer: bought)
    }

    /// Applies ``InventoryRules/closing(_:sold:)``.
    static func close(_ db: Database, reservation: Reservation, customerID: String, sold: Bool) throws {
        for change in InventoryRules.closing(reservation, sold: sold) {
            try db.cachedStatement(sql: """
                UPDATE fs_products SET stock = stock + ?1, reserved = reserved + ?2, sold = sold + ?3 WHERE product_id = ?4
                """).execute(arguments: [change.stock, change.reserved, change.sold, change.productID])
            if change.customerBought != 0 {
                try db.cachedStatement(sql: """
                    UPDATE fs_customer_purchases SET quantity = MAX(0, quantity + ?1) WHERE product_id = ?2 AND customer_id = ?3
                    """).execute(arguments: [change.customerBought, change.productID, customerID])
            }
        }
    }

    static func product(_ db: Database, id: String) throws -> Product? {
        try Row.fetchOne(db, sql: "SELECT * FROM fs_products WHERE product_id = ?", arguments: [id]).map(product(row:))
    }

    static func product(row: Row) -> Product {
        Product(productID: row["product_id"], stock: row["stock"], reserved: row["reserved"], sold: row["sold"],
                perCustomerLimit: row["per_customer_limit"], price: row["price"])
    }
}
