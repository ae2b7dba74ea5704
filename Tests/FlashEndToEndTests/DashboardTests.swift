import AsyncHTTPClient
import FlashCore
import Foundation
import NIOCore
import Synchronization
import Testing

/// The dashboard in a real headless browser, watching a real `flashsale serve` through a flash
/// sale: the charts must draw what the server reported, fit a phone, and survive a restart.
@Suite("The dashboard in a real browser", .serialized, .enabled(if: HeadlessBrowser.executable != nil, "set FLASHSALE_TEST_BROWSER (scripts/test does)"))
struct DashboardTests {
    /// Where the screenshots go: `$FLASHSALE_TEST_ARTIFACTS`, else `.build/test-artifacts`.
    static var artifacts: URL {
        if let path = ProcessInfo.processInfo.environment["FLASHSALE_TEST_ARTIFACTS"], !path.isEmpty { return URL(fileURLWithPath: path) }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/test-artifacts")
    }

    /// What the page shows, read from its DOM (the page's documented test contract).
    static let readPage = """
        (() => {
          const series = {};
          document.querySelectorAll('polyline.series').forEach(p => {
            const svg = p.closest('svg');
            series[p.dataset.series] = {times: p.dataset.times || '', values: p.dataset.values || '', points: p.getAttribute('points') || '',
              yMax: Number(svg.dataset.yMax), top: Number(svg.dataset.plotTop), height: Number(svg.dataset.plotHeight)};
          });
          const stats = {};
          document.querySelectorAll('[data-stat]').forEach(e => stats[e.dataset.stat] = e.textContent.trim());
          const connection = document.getElementById('connection');
          return JSON.stringify({series, stats, connection: connection ? connection.dataset.state : null,
            snapshots: Number(document.body.dataset.snapshots || 0), scrollWidth: document.documentElement.scrollWidth,
            innerWidth: window.innerWidth, external: performance.getEntriesByType('resource').map(r => r.name)});
        })()
        """

    struct Page {
        var json: JSONValue
        var connection: String? { json["connection"]?.string }
        var snapshots: Int { json["snapshots"]?.int ?? 0 }
        func stat(_ path: String) -> String? { json["stats"]?[path]?.string }
        func series(_ path: String) -> JSONValue? { json["series"]?[path] }
    }

    static func read(_ page: DevToolsSession) async throws -> Page {
        guard let text = try await page.evaluate(readPage).string else { throw ServerError("the page gave no reading") }
        return Page(json: try JSONValue.parse(Array(text.utf8)))
    }

    /// The value at a dotted path of a snapshot (`queue.visible`).
    static func value(_ snapshot: JSONValue, _ path: String) -> JSONValue? {
        snapshot.at(path.split(separator: ".").map(String.init))
    }

    @Test func theDashboardDrawsWhatTheServerReportsFitsAPhoneAndOutlivesARestart() async throws {
        let browserPath = try #require(HeadlessBrowser.executable)
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let data = ServerProcess.temporaryDataPath()
        let arguments = ["--workers", "2", "--payment-latency", "100ms"]
        let first = try await ServerProcess(dataPath: data, arguments: arguments)
        let current = CurrentServer(first)
        let port = first.port
        let baseURL = first.baseURL
        let client = APIClient(http: http, base: baseURL)
        let browser = try await HeadlessBrowser(executable: browserPath)
        // The test's own subscription: every snapshot the server sent, by time.
        let reported = SnapshotLog()
        let recorder = Task { try await Self.record(http: http, url: baseURL + "/dashboard/events", into: reported) }
        do {
            #expect(try await client.call(.POST, "/reset-stock/500").status == 200)
            try await browser.withPage(http) { page in
                try await page.send("Page.enable")
                try await page.send("Emulation.setDeviceMetricsOverride", #"{"width":1280,"height":1000,"deviceScaleFactor":1,"mobile":false}"#)
                try await page.send("Page.navigate", #"{"url":\#(JSONText.quoted(baseURL + "/dashboard"))}"#)
                try await expectEventually(timeout: .seconds(60)) {
                    let reading = try await Self.read(page)
                    return reading.connection == "live" && reading.snapshots >= 2
                }
                // A flash sale: 200 buyers at once against 2 workers at 100 ms a charge (about 10 s to drain).
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for buyer in 0..<20 {
                        group.addTask {
                            for round in 0..<10 {
                                _ = try await client.call(.POST, "/buy", json: #"{"customer_id": \#(buyer * 100 + round)}"#)
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                try await expectEventually(timeout: .seconds(60)) { try await client.stats().int("orders", "completed") == 200 }
                // Let the page receive the settled figures.
                try await expectEventually(timeout: .seconds(60)) {
                    try await Self.read(page).stat("orders.completed") == "200"
                }
                let page1 = try await Self.read(page)
                #expect(page1.stat("stock.units") == "300")
                #expect(page1.stat("orders.failed") == "0")
                #expect(page1.json["external"]?.array?.allSatisfy { $0.string?.hasPrefix(baseURL) == true } == true,
                        "the page fetched something from elsewhere: \(String(describing: page1.json["external"]))")
                try Self.checkCharts(page1, against: reported.all)
                let laptop = try await page.screenshot()
                try FileManager.default.createDirectory(at: Self.artifacts, withIntermediateDirectories: true)
                try laptop.write(to: Self.artifacts.appendingPathComponent("dashboard.png"))

                // A phone: one column, nothing wider than the screen.
                // The browser applies the new size when it gets to it (a busy machine: seconds); the
                // page fits once it is laid out at 390 px (reading scrollWidth lays it out), and a
                // page wider than a phone never does.
                try await page.send("Emulation.setDeviceMetricsOverride", #"{"width":390,"height":844,"deviceScaleFactor":2,"mobile":true}"#)
                try await expectEventually(timeout: .seconds(60)) {
                    let phone = try await Self.read(page)
                    return phone.json["innerWidth"]?.int == 390 && (phone.json["scrollWidth"]?.int ?? .max) <= 390
                }
                let phone = try await Self.read(page)
                #expect(phone.json["innerWidth"]?.int == 390)
                #expect((phone.json["scrollWidth"]?.int ?? .max) <= 390, "the page is wider than a phone: \(String(describing: phone.json["scrollWidth"]))")
                try await page.screenshot().write(to: Self.artifacts.appendingPathComponent("dashboard-phone.png"))
                try await page.send("Emulation.setDeviceMetricsOverride", #"{"width":1280,"height":1000,"deviceScaleFactor":1,"mobile":false}"#)

                // A restart: SIGTERM ends the open event streams (shutdown does not wait for
                // them), the page shows it is reconnecting, keeps what it drew, and goes live again.
                // A shutdown that waited for the open streams would never end (the page and the
                // test's own subscription keep theirs open): terminate fails it after its 60 s (a
                // generous allowance for a clean exit on a busy machine; no separate bound on the
                // time, which would measure the machine, not the shutdown).
                let kept = try await Self.read(page).snapshots
                #expect(try await current.server.terminate(timeout: .seconds(60)) == 0)
                try await expectEventually(timeout: .seconds(60)) { try await Self.read(page).connection == "reconnecting" }
                current.server = try await ServerProcess(dataPath: data, arguments: arguments + ["--port", "\(port)"])
                try await expectEventually(timeout: .seconds(60)) {
                    let reading = try await Self.read(page)
                    return reading.connection == "live" && reading.snapshots > kept
                }
                let after = try await Self.read(page)
                #expect(after.stat("orders.completed") == "200")
                #expect(after.stat("stock.units") == "300")
            }
        } catch {
            recorder.cancel()
            browser.close()
            current.server.kill9()
            try? await http.shutdown()
            throw error
        }
        recorder.cancel()
        browser.close()
        _ = try await current.server.terminate()
        try await http.shutdown()
    }

    /// Every point the page drew matches the server's snapshot of that time, the queue was seen
    /// climbing and draining, and points sit where the chart's scale puts them.
    static func checkCharts(_ page: Page, against reported: [Int64: JSONValue]) throws {
        let paths = ["queue.visible", "queue.in_flight", "queue.dead_letter", "rates.accepted_per_second", "rates.processed_per_second",
                     "accept_latency.p50_ms", "accept_latency.p99_ms", "workers.busy", "workers.count", "stock.units",
                     "reconciler.completed", "reconciler.failed", "shed.per_second", "shed.wait_ms", "shed.limit"]
        for path in paths {
            let series = try #require(page.series(path), "no chart series \(path)")
            let times = series["times"]?.string?.split(separator: ",", omittingEmptySubsequences: false).compactMap { Int64($0) } ?? []
            let values = series["values"]?.string?.split(separator: ",", omittingEmptySubsequences: false).map(String.init) ?? []
            let points = series["points"]?.string?.split(separator: " ").map { $0.split(separator: ",").compactMap { Double($0) } } ?? []
            #expect(times.count == values.count && values.count == points.count, "\(path): \(times.count) times, \(values.count) values, \(points.count) points")
            #expect(times.count >= 5, "\(path) drew \(times.count) points")
            var compared = 0
            for (t, drawn) in zip(times, values) {
                guard let snapshot = reported[t] else { continue }
                compared += 1
                let expected = value(snapshot, path)
                if let number = expected?.double {
                    #expect(Double(drawn).map { abs($0 - number) < 1e-6 } == true, "\(path) at \(t): drew '\(drawn)', the server said \(number)")
                } else {
                    #expect(drawn == "", "\(path) at \(t): drew '\(drawn)', the server said null")
                }
            }
            #expect(compared >= 5, "\(path): only \(compared) drawn points could be matched to the server's snapshots")
            // The scale: y = top + height × (1 − value / yMax).
            let yMax = series["yMax"]?.double ?? 0, top = series["top"]?.double ?? 0, height = series["height"]?.double ?? 0
            if yMax > 0, let last = points.last, last.count == 2, let value = Double(values.last ?? "") {
                #expect(abs(last[1] - (top + height * (1 - value / yMax))) < 0.6, "\(path): last point at y \(last[1]) for \(value)")
            }
        }
        func drawn(_ path: String) -> [Double] {
            page.series(path)?["values"]?.string?.split(separator: ",").compactMap { Double($0) } ?? []
        }
        #expect(drawn("queue.visible").max() ?? 0 > 0, "the queue never climbed on the chart")
        #expect(drawn("queue.visible").last == 0, "the queue did not drain on the chart")
        #expect(drawn("rates.accepted_per_second").max() ?? 0 > 0)
        #expect(drawn("rates.processed_per_second").max() ?? 0 > 0)
        #expect(drawn("workers.busy").max() ?? 0 > 0)
        #expect(drawn("accept_latency.p99_ms").max() ?? 0 > 0)
        #expect(drawn("stock.units").first ?? 0 >= 300 && drawn("stock.units").last == 300)
    }

    /// Reads `url`'s Server-Sent Events until cancelled, keeping every snapshot by its time.
    static func record(http: HTTPClient, url: String, into reported: SnapshotLog) async throws {
        let response = try await http.execute(HTTPClientRequest(url: url), timeout: .hours(1))
        var pending = ""
        for try await chunk in response.body {
            pending += String(buffer: chunk)
            while let end = pending.range(of: "\n\n") {
                let event = pending[..<end.lowerBound]
                pending = String(pending[end.upperBound...])
                guard let data = event.split(separator: "\n").first(where: { $0.hasPrefix("data: ") })?.dropFirst(6),
                      let json = try? JSONValue.parse(Array(data.utf8))
                else { continue }
                let snapshots = json["snapshots"]?.array ?? [json]
                reported.add(snapshots)
            }
        }
    }
}

/// The server process of the moment (the test restarts it).
final class CurrentServer: @unchecked Sendable {
    private let lock = NSLock()
    private var process: ServerProcess
    init(_ process: ServerProcess) { self.process = process }
    var server: ServerProcess {
        get { lock.withLock { process } }
        set { lock.withLock { process = newValue } }
    }
}

/// Snapshots by time, from the test's own event stream.
final class SnapshotLog: Sendable {
    private let snapshots = Mutex<[Int64: JSONValue]>([:])
    func add(_ list: [JSONValue]) {
        snapshots.withLock { snapshots in
            for snapshot in list { if let t = snapshot["t"]?.int { snapshots[Int64(t)] = snapshot } }
        }
    }
    var all: [Int64: JSONValue] { snapshots.withLock { $0 } }
}

