import FlashCore
import FlashOrders
import GRDB

/// The inventory gate's SQL: reservations are made in the transaction that stores the order,
/// so a unit is reserved exactly when its order exists. SQLite runs one writer at a time, so a
/// check-then-decrement inside that transaction is atomic whatever the concurrency.
enum SQLiteInventory {
    /// What a reservation took, and the catalog prices of the products it found.
    struct Reservation {
        var units: [(String, Int)] = []
        var prices: [String: Double] = [:]
    }

    /// Reserves every item's units for `customerID`, all or nothing (the caller's savepoint rolls
    /// back on a throw). Returns the reservation to keep with the order: product → units.
    static func reserve(_ db: Database, items: [OrderItem], customerID: String, strictCatalog: Bool) throws -> Reservation {
        var wanted: [(String, Int)] = []
        for item in items {
            if let index = wanted.firstIndex(where: { $0.0 == item.productID }) {
                wanted[index].1 += item.quantity
            } else {
                wanted.append((item.productID, item.quantity))
            }
        }
        var reservation = Reservation()
        let lookup = try db.cachedStatement(sql: "SELECT stock, per_customer_limit, price FROM fs_products WHERE product_id = ?")
        for (productID, quantity) in wanted {
            guard let row = try Row.fetchOne(lookup, arguments: [productID]) else {
                if strictCatalog { throw InventoryRefusal.unknownProduct(productID: productID) }
                continue
            }
            let stock: Int = row[0]
            let limit: Int? = row[1]
            if let price: Double = row[2] { reservation.prices[productID] = price }
            if let limit {
                let bought = try Int.fetchOne(db.cachedStatement(sql: """
                    SELECT quantity FROM fs_customer_purchases WHERE product_id = ? AND customer_id = ?
                    """), arguments: [productID, customerID]) ?? 0
                if bought + quantity > limit { throw InventoryRefusal.limitExceeded(productID: productID, limit: limit) }
            }
            guard stock >= quantity else { throw InventoryRefusal.soldOut(productID: productID) }
            try db.cachedStatement(sql: """
                UPDATE fs_products SET stock = stock - ?1, reserved = reserved + ?1 WHERE product_id = ?2
                """).execute(arguments: [quantity, productID])
            if limit != nil {
                try db.cachedStatement(sql: """
                    INSERT INTO fs_customer_purchases (product_id, customer_id, quantity) VALUES (?1, ?2, ?3)
                    ON CONFLICT(product_id, customer_id) DO UPDATE SET quantity = quantity + ?3
                    """).execute(arguments: [productID, customerID, quantity])
            }
            reservation.units.append((productID, quantity))
        }
        return reservation
    }

    /// Turns a reservation into sales (completed) or gives its units back (failed).
    static func settle(_ db: Database, reservation: [(String, Int)], customerID: String, sold: Bool) throws {
        for (productID, quantity) in reservation {
            if sold {
                try db.cachedStatement(sql: """
                    UPDATE fs_products SET reserved = reserved - ?1, sold = sold + ?1 WHERE product_id = ?2
                    """).execute(arguments: [quantity, productID])
            } else {
                try db.cachedStatement(sql: """
                    UPDATE fs_products SET reserved = reserved - ?1, stock = stock + ?1 WHERE product_id = ?2
                    """).execute(arguments: [quantity, productID])
                try db.cachedStatement(sql: """
                    UPDATE fs_customer_purchases SET quantity = MAX(0, quantity - ?1) WHERE product_id = ?2 AND customer_id = ?3
                    """).execute(arguments: [quantity, productID, customerID])
            }
        }
    }

    static func encode(_ reservation: [(String, Int)]) -> String? {
        guard !reservation.isEmpty else { return nil }
        return "{" + reservation.map { "\(JSONText.quoted($0.0)):\($0.1)" }.joined(separator: ",") + "}"
    }

    static func decode(_ text: String?) -> [(String, Int)] {
        guard let text, let members = (try? JSONValue.parse(Array(text.utf8)))?.object else { return [] }
        return members.compactMap { key, value in
            if case let .number(_, integer?) = value { return (key, Int(integer)) }
            return nil
        }.sorted { $0.0 < $1.0 }
    }

    static func product(_ db: Database, id: String) throws -> Product? {
        try Row.fetchOne(db, sql: "SELECT * FROM fs_products WHERE product_id = ?", arguments: [id]).map {
            Product(productID: $0["product_id"], stock: $0["stock"], reserved: $0["reserved"], sold: $0["sold"],
                    perCustomerLimit: $0["per_customer_limit"], price: $0["price"])
        }
    }
}
