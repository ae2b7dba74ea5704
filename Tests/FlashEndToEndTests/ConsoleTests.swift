import AsyncHTTPClient
import FlashCore
import Foundation
import Testing

/// The dashboard's console in a real browser (headless Chromium), as an operator uses it during
/// a sale: read the queues and the catalog, open an order, pause and resume consuming, purge
/// only after typing the queue's name; every action with the admin token typed in the page.
@Suite("The console in a browser", .serialized)
struct ConsoleTests {
    /// Text of the elements matching `selector`, as one JSON array.
    static func texts(_ page: DevToolsSession, _ selector: String) async throws -> [String] {
        let value = try await page.evaluate("JSON.stringify(Array.from(document.querySelectorAll(\(JSONText.quoted(selector)))).map((e) => e.textContent))")
        guard let text = value.string, case let .array(items) = try JSONValue.parse(Array(text.utf8)) else { return [] }
        return items.compactMap(\.string)
    }

    @Test func browseOpenAnOrderPauseResumeAndPurgeWithConfirmation() async throws {
        let browserPath = try #require(HeadlessBrowser.executable)
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let server = try await ServerProcess(dataPath: ServerProcess.temporaryDataPath(), arguments: ["--workers", "2", "--payment-latency", "10ms"])
        let client = APIClient(http: http, base: server.baseURL)
        let browser = try await HeadlessBrowser(executable: browserPath)
        do {
            #expect(try await client.call(.PUT, "/products/sku-7", json: #"{"stock": 40, "price": 12.5}"#).status == 200)
            let placed = try await client.call(.POST, "/orders/async", json: #"{"customer_id": "c1", "items": [{"product_id": "sku-7", "quantity": 2}]}"#)
            let orderID = try #require(placed.string("order_id"))
            try await expectEventually(timeout: .seconds(60)) { try await client.stats().int("orders", "completed") == 1 }
            try await browser.withPage(http) { page in
                try await page.send("Page.enable")
                try await page.send("Page.navigate", #"{"url":\#(JSONText.quoted(server.baseURL + "/dashboard"))}"#)
                // The queues with their settings, and the catalog.
                try await expectEventually(timeout: .seconds(60)) {
                    try await Self.texts(page, "#queues tr[data-queue='payments'] td").count >= 5
                }
                let row = try await Self.texts(page, "#queues tr[data-queue='payments'] td")
                #expect(row[3].contains("lease 30 s") && row[3].contains("5 receives"), "\(row)")
                #expect(row[4] == "running", "\(row)")
                try await expectEventually(timeout: .seconds(60)) {
                    try await Self.texts(page, "#products tr[data-product='sku-7'] td") == ["sku-7", "38", "0", "2", "12.5"]
                }

                // Open an order by its id.
                _ = try await page.evaluate("document.getElementById('order-id').value = \(JSONText.quoted(orderID)); document.getElementById('order-open').click(); true")
                try await expectEventually(timeout: .seconds(30)) {
                    try await Self.texts(page, "#order-view dd[data-field='status']") == ["completed"]
                }
                #expect(try await Self.texts(page, "#order-view dd[data-field='items']") == ["2 × sku-7"])

                // An action without the token is refused, and the page says why.
                _ = try await page.evaluate("document.querySelector(\"#queues button[data-action='pause']\").click(); true")
                try await expectEventually(timeout: .seconds(30)) {
                    try await Self.texts(page, "#console-log").first?.hasPrefix("Not allowed") == true
                }
                #expect(try await client.stats().json?["queue"]?["paused"] == .bool(false))

                // With the token: pause; the fleet's switch is on, and the page shows it.
                _ = try await page.evaluate("""
                    (() => { const t = document.getElementById('admin-token'); t.value = \(JSONText.quoted(ServerProcess.adminToken));
                      t.dispatchEvent(new Event('input')); document.querySelector("#queues button[data-action='pause']").click(); return true; })()
                    """)
                try await expectEventually(timeout: .seconds(30)) { try await client.stats().json?["queue"]?["paused"] == .bool(true) }
                try await expectEventually(timeout: .seconds(60)) {
                    let row = try await Self.texts(page, "#queues tr[data-queue='payments'] td.consuming")
                    let stat = try await Self.texts(page, "#consuming")
                    return row == ["paused"] && stat == ["paused"]
                }
                // Orders wait while paused.
                for _ in 0..<3 { _ = try await client.call(.POST, "/orders/async", json: seedOrder) }
                try await Task.sleep(for: .seconds(1))
                #expect(try await client.stats().int("orders", "pending") == 3)

                // Resume: they are charged.
                _ = try await page.evaluate("document.querySelector(\"#queues button[data-action='resume']\").click(); true")
                try await expectEventually(timeout: .seconds(60)) { try await client.stats().int("orders", "completed") == 4 }
                try await expectEventually(timeout: .seconds(60)) {
                    try await Self.texts(page, "#queues tr[data-queue='payments'] td.consuming") == ["running"]
                }

                // Browse the completed orders, newest first, and open one from the list.
                _ = try await page.evaluate("document.getElementById('orders-status').value = 'completed'; document.getElementById('orders-load').click(); true")
                try await expectEventually(timeout: .seconds(30)) {
                    try await Self.texts(page, "#orders tr td:nth-child(2)") == ["completed", "completed", "completed", "completed"]
                }
                let listed = try await Self.texts(page, "#orders tr td:first-child")
                #expect(listed.last == orderID, "the first order placed is the oldest: \(listed)")
                _ = try await page.evaluate("document.querySelector('#orders tr:last-child td a').click(); true")
                try await expectEventually(timeout: .seconds(30)) {
                    try await Self.texts(page, "#order-view dd[data-field='order']") == [orderID]
                }

                // Purge asks for the name: a wrong one cancels, the right one purges.
                _ = try await client.call(.POST, "/admin/queues/payments/pause")
                // The pool follows the switch within its poll; wait until it has.
                try await expectEventually(timeout: .seconds(30)) {
                    let response = try await http.execute(HTTPClientRequest(url: server.baseURL + "/metrics"), timeout: .seconds(10))
                    return String(buffer: try await response.body.collect(upTo: 4 << 20)).contains("\nflashsale_process_consuming_paused 1")
                }
                for _ in 0..<2 { _ = try await client.call(.POST, "/orders/async", json: seedOrder) }
                _ = try await page.evaluate("window.prompt = () => 'nope'; document.querySelector(\"#queues tr[data-queue='payments'] button[data-action='purge']\").click(); true")
                try await expectEventually(timeout: .seconds(30)) {
                    try await Self.texts(page, "#console-log").first?.contains("cancelled") == true
                }
                #expect(try await client.stats().int("queue", "visible") == 2)
                _ = try await page.evaluate("window.prompt = () => 'payments'; document.querySelector(\"#queues tr[data-queue='payments'] button[data-action='purge']\").click(); true")
                try await expectEventually(timeout: .seconds(60)) {
                    try await Self.texts(page, "#console-log").first?.hasPrefix("Purged payments: 2 messages") == true
                }
                #expect(try await client.stats().int("queue", "visible") == 0)
                #expect(try await client.stats().int("orders", "failed") == 2, "purged orders that were never charged are settled failed")
                try FileManager.default.createDirectory(at: DashboardTests.artifacts, withIntermediateDirectories: true)
                try await page.screenshot().write(to: DashboardTests.artifacts.appendingPathComponent("console.png"))
            }
        } catch {
            browser.close()
            try? await http.shutdown()
            throw error
        }
        browser.close()
        try await http.shutdown()
        _ = try await server.terminate()
    }

    /// A gateway outage dead-letters orders; with a hold they stay open. After the outage, from
    /// the console: one is retried (sent back and charged), the other settled in bulk after the
    /// dead-letter queue's name is typed.
    @Test func deadLettersOfAnOutageAreRetriedOrSettledFromTheConsole() async throws {
        let browserPath = try #require(HeadlessBrowser.executable)
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let data = ServerProcess.temporaryDataPath()
        // Every charge fails: each order's one allowed delivery ends in the dead-letter queue.
        let outage = try await ServerProcess(dataPath: data, arguments: [
            "--workers", "1", "--payment-latency", "5ms", "--payment-error-rate", "1", "--max-receives", "1",
            "--retry-backoff", "50ms", "--dead-letter-hold", "1h"])
        var orders: [String] = []
        do {
            let client = APIClient(http: http, base: outage.baseURL)
            for n in 0..<2 {
                let placed = try await client.call(.POST, "/orders/async", json: #"{"customer_id": "c\#(n)", "items": [{"product_id": "x", "quantity": 1, "price": 3}]}"#)
                orders.append(try #require(placed.string("order_id")))
            }
            // Found by the dead-letter handler (their holds start).
            try await expectEventually(timeout: .seconds(60)) {
                try await client.call(.GET, "/admin/dead-letters?state=open").json?["dead_letters"]?.array?.count == 2
            }
            // Held: still open, not settled as abandoned.
            for id in orders { #expect(try await client.call(.GET, "/orders/\(id)").string("status") == "processing") }
        } catch {
            _ = try? await outage.terminate()
            try? await http.shutdown()
            throw error
        }
        _ = try await outage.terminate()
        // The gateway works again: the same file, a process without the outage.
        let server = try await ServerProcess(dataPath: data, arguments: ["--workers", "1", "--payment-latency", "5ms", "--dead-letter-hold", "1h"])
        let client = APIClient(http: http, base: server.baseURL)
        let browser = try await HeadlessBrowser(executable: browserPath)
        let placed = orders
        do {
            try await browser.withPage(http) { page in
                try await page.send("Page.enable")
                try await page.send("Page.navigate", #"{"url":\#(JSONText.quoted(server.baseURL + "/dashboard"))}"#)
                try await expectEventually(timeout: .seconds(60)) {
                    try await page.evaluate("document.getElementById('dead-load') !== null") == .bool(true)
                }
                _ = try await page.evaluate("""
                    (() => { const t = document.getElementById('admin-token'); t.value = \(JSONText.quoted(ServerProcess.adminToken));
                      t.dispatchEvent(new Event('input')); document.getElementById('dead-load').click(); return true; })()
                    """)
                try await expectEventually(timeout: .seconds(30)) {
                    try await Self.texts(page, "#dead-letters tr td.state") == ["processing", "processing"]
                }
                #expect(try await Self.texts(page, "#console-log").first?.contains("2 with an open order") == true)
                #expect(try await Self.texts(page, "#dead-letters tr td:nth-child(5)").allSatisfy { !$0.isEmpty && $0 != "–" }, "held until")
                // Retry the first: back in the payments queue, and charged.
                let first = try #require(try await page.evaluate("document.querySelector('#dead-letters tr').dataset.order").string)
                _ = try await page.evaluate("document.querySelector(\"#dead-letters tr button[data-action='redrive']\").click(); true")
                try await expectEventually(timeout: .seconds(30)) {
                    try await Self.texts(page, "#console-log").first?.contains("is back in the payments queue") == true
                }
                try await expectEventually(timeout: .seconds(60)) { try await client.call(.GET, "/orders/\(first)").string("status") == "completed" }
                #expect(try await Self.texts(page, "#dead-letters tr td.state") == ["processing"])
                // Settle the rest: a wrong name cancels, the queue's name settles.
                _ = try await page.evaluate("window.prompt = () => 'nope'; document.getElementById('dead-settle-all').click(); true")
                try await expectEventually(timeout: .seconds(30)) {
                    try await Self.texts(page, "#console-log").first?.contains("Cancelled") == true
                }
                let second = try #require(placed.first { $0 != first })
                #expect(try await client.call(.GET, "/orders/\(second)").string("status") == "processing")
                _ = try await page.evaluate("window.prompt = () => 'payments-dlq'; document.getElementById('dead-settle-all').click(); true")
                try await expectEventually(timeout: .seconds(60)) {
                    try await Self.texts(page, "#console-log").first?.hasPrefix("Settled: 0 completed, 1 failed") == true
                }
                let settled = try await client.call(.GET, "/orders/\(second)")
                #expect(settled.string("status") == "failed")
                #expect(settled.string("failure_reason")?.contains("settled by an operator") == true)
                #expect(try await Self.texts(page, "#dead-letters tr td.state").isEmpty)
                // Its history: the failed attempt, the dead-lettering, and who settled it.
                _ = try await page.evaluate("document.getElementById('order-id').value = \(JSONText.quoted(second)); document.getElementById('order-open').click(); true")
                try await expectEventually(timeout: .seconds(30)) {
                    try await page.evaluate("Array.from(document.querySelectorAll('#order-history li')).map((li) => li.dataset.kind).join(' ')")
                        == .string("placed attempt_started attempt_failed dead_lettered failed")
                }
                let last = try #require(try await Self.texts(page, "#order-history li[data-kind='failed']").first)
                #expect(last.contains("an operator ("), "\(last)")
                try FileManager.default.createDirectory(at: DashboardTests.artifacts, withIntermediateDirectories: true)
                try await page.screenshot().write(to: DashboardTests.artifacts.appendingPathComponent("console-dead-letters.png"))
            }
            // Charged once: the retried order.
            #expect(try await client.stats().int("payments", "charges") == 1)
        } catch {
            browser.close()
            try? await http.shutdown()
            throw error
        }
        browser.close()
        try await http.shutdown()
        _ = try await server.terminate()
    }
}
