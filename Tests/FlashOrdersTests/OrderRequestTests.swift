import FlashCore
import FlashOrders
import Testing

@Suite("Order request decoding")
struct OrderRequestTests {
    func decode(_ text: String) throws(OrderValidationError) -> OrderRequest {
        try OrderRequest.decode(Array(text.utf8))
    }

    func code(_ text: String) -> String? {
        do {
            _ = try decode(text)
            return nil
        } catch {
            return error.code
        }
    }

    @Test func decodesTheSeedsBody() throws {
        let request = try decode(#"{"customer_id": 1234, "items": [{"product_id": "PROD-001", "quantity": 2, "price": 49.99}]}"#)
        #expect(request.customerID == "1234")
        #expect(request.items == [OrderItem(productID: "PROD-001", quantity: 2, price: 49.99)])
        #expect(request.orderID == nil)
    }

    @Test func isLenientAsRealClientsAre() throws {
        let request = try decode(#"{"customer_id": "c-9", "extra": {"a": [1, true, null]}, "order_id": 77,"#
            + #" "items": [{"item_id": 5, "quantity": 1}, {"product_id": "A\u00e9"}]}"#)
        #expect(request.customerID == "c-9")
        #expect(request.orderID == "77")
        #expect(request.items.map(\.productID) == ["5", "Aé"])
        #expect(request.items[0].price == nil)
        #expect(request.items[1].quantity == 1)
    }

    @Test func refusesBadInputWithACode() {
        #expect(code("{") == "invalid_json")
        #expect(code("[1]") == "invalid_json")
        #expect(code("") == "invalid_json")
        #expect(code(#"{"items": [{"product_id": "a"}]}"#) == "missing_field")
        #expect(code(#"{"customer_id": 1}"#) == "missing_field")
        #expect(code(#"{"customer_id": 1, "items": []}"#) == "empty_items")
        #expect(code(#"{"customer_id": 1, "items": {}}"#) == "invalid_field")
        #expect(code(#"{"customer_id": true, "items": [{"product_id": "a"}]}"#) == "invalid_field")
        #expect(code(#"{"customer_id": 1.5, "items": [{"product_id": "a"}]}"#) == "invalid_field")
        #expect(code(#"{"customer_id": 1, "items": [{"product_id": "a", "quantity": 0}]}"#) == "invalid_quantity")
        #expect(code(#"{"customer_id": 1, "items": [{"product_id": "a", "quantity": 10001}]}"#) == "invalid_quantity")
        #expect(code(#"{"customer_id": 1, "items": [{"product_id": "a", "quantity": 2.5}]}"#) == "invalid_quantity")
        #expect(code(#"{"customer_id": 1, "items": [{"product_id": "a", "quantity": "2"}]}"#) == "invalid_quantity")
        #expect(code(#"{"customer_id": 1, "items": [{"product_id": "a", "price": -1}]}"#) == "invalid_price")
        #expect(code(#"{"customer_id": 1, "items": [{"product_id": "a", "price": "9"}]}"#) == "invalid_price")
        #expect(code(#"{"customer_id": 1, "items": [{"quantity": 1}]}"#) == "missing_field")
        let many = "[" + Array(repeating: #"{"product_id":"a"}"#, count: 101).joined(separator: ",") + "]"
        #expect(code(#"{"customer_id": 1, "items": \#(many)}"#) == "too_many_items")
        #expect(code(#"{"customer_id": "\#(String(repeating: "x", count: 129))", "items": [{"product_id": "a"}]}"#) == "invalid_field")
    }

    @Test func totalsRoundToCents() {
        let order = NewOrder(id: "1", customerID: "c", items: [
            OrderItem(productID: "a", quantity: 3, price: 0.1), OrderItem(productID: "b", quantity: 1, price: nil),
        ], channel: .async, idempotencyKey: nil)
        #expect(order.total == 0.3)
    }
}

@Suite("JSON parser")
struct JSONValueTests {
    @Test func parsesEveryKindOfValue() throws {
        let value = try JSONValue.parse(Array(#" {"a": [1, -2.5e3, true, false, null, "x\"\u0041\ud83d\ude00"], "b": {}} "#.utf8))
        guard case let .array(list)? = value["a"] else { Issue.record("no array"); return }
        #expect(list[0] == .number(1, integer: 1))
        #expect(list[1] == .number(-2500, integer: nil))
        #expect(list[2] == .bool(true))
        #expect(list[4] == .null)
        #expect(list[5] == .string("x\"A😀"))
        #expect(value["b"] == .object([:]))
    }

    @Test func rejectsWhatIsNotJSON() {
        for text in ["", "{", "{\"a\" 1}", "[1,]", "01", "1.", "\"\u{01}\"", "tru", "{} x", "\"\\ud800\"", "-"] {
            #expect(throws: JSONParseError.self, "\(text)") { try JSONValue.parse(Array(text.utf8)) }
        }
    }

    @Test func quotesStringsForOutput() {
        #expect(JSONText.quoted("a\"b\\c\n\u{01}") == #""a\"b\\c\n\u0001""#)
        #expect(JSONText.number(2) == "2")
        #expect(JSONText.number(49.99) == "49.99")
    }

    @Test func parsesDurations() {
        #expect(Duration(parsing: "3s") == .seconds(3))
        #expect(Duration(parsing: "30ms") == .milliseconds(30))
        #expect(Duration(parsing: "1.5s") == .milliseconds(1500))
        #expect(Duration(parsing: "2m") == .seconds(120))
        #expect(Duration(parsing: "-1s") == nil)
        #expect(Duration(parsing: "abc") == nil)
        // A bare number could be seconds or milliseconds: refused, but for 0.
        #expect(Duration(parsing: "200") == nil)
        #expect(Duration(parsing: "0.5") == nil)
        #expect(Duration(parsing: "0") == .zero)
        #expect(Duration.milliseconds(30).shortDescription == "30ms")
    }
}
