import Foundation
import Testing
@testable import FlashLab

@Suite("Load result as an HTML report")
struct LoadHTMLReportTests {
    static let hostile = #"HTTP 503 <script>alert("x")</script>"#

    /// One request per millisecond in `millis`, the first `failures` of them failed.
    static func statistics(_ method: String, _ name: String, millis: ClosedRange<Int>, failures: Int = 0) -> EndpointStatistics {
        var stats = EndpointStatistics(method: method, name: name)
        for (index, ms) in millis.enumerated() { stats.record(micros: UInt64(ms) * 1000, failed: index < failures, bytes: 64) }
        return stats
    }

    /// An open-loop run of `seconds` one-second samples, 100 requests (1…100 ms), 3 failed.
    static func result(seconds: Int = 5, host: String = "http://127.0.0.1:8080") -> LoadResult {
        var configuration = LoadConfiguration(host: host)
        configuration.endpoint = .async
        configuration.rate = 20
        let endpoint = statistics("POST", "/orders/async", millis: 1...100, failures: 3)
        var aggregated = EndpointStatistics(method: "", name: "Aggregated")
        aggregated.merge(endpoint)
        let history = (0..<seconds).map { second in
            let window = statistics("", "Aggregated", millis: (second * 20 + 1)...(second * 20 + 20), failures: second == 1 ? 3 : 0)
            return LoadSample(unixTime: 1_700_000_000 + Double(second + 1), elapsed: Double(second + 1), users: 0,
                              requestsPerSecond: Double(window.requests), failuresPerSecond: Double(window.failures),
                              window: window, total: aggregated)
        }
        return LoadResult(configuration: configuration, elapsed: Double(seconds), endpoints: [endpoint], aggregated: aggregated,
                          statusCodes: [202: 97, 503: 3], errors: [(method: "POST", name: "/orders/async", error: hostile, count: 3)],
                          history: history)
    }

    @Test func isOneSelfContainedHTML5Document() {
        let html = Self.result().html
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.hasSuffix("</html>\n"))
        #expect(html.contains("<title>flashsale load report</title>"))
        #expect(html.contains("POST http://127.0.0.1:8080/orders/async"))
        #expect(html.contains("open loop at 20/s"))
        #expect(html.contains("3 (3.00%)"))
        // Nothing fetched: no scripts, stylesheets, images or imports.
        for fetch in ["<script", "<link", "src=", "@import", "url("] { #expect(!html.contains(fetch)) }
    }

    @Test func embedsTheTwoChartsInline() {
        let html = Self.result().html
        #expect(html.components(separatedBy: "<svg").count - 1 == 2)
        #expect(html.contains("requests/s"))
        #expect(html.contains("p99"))
    }

    @Test func percentilesAreTheSummarysFigures() throws {
        let result = Self.result()
        let html = result.html
        // The Aggregated row of the summary's percentile table: name, the percentiles, # reqs.
        let lines = result.summary.components(separatedBy: "\n")
        let start = try #require(lines.firstIndex(of: "Response time percentiles (approximated)"))
        let row = try #require(lines[start...].first { $0.contains("Aggregated") })
        let values = row.split(separator: " ").dropFirst().prefix(LoadResult.percentiles.count).map(String.init)
        #expect(values.count == LoadResult.percentiles.count)
        let p99 = values[try #require(LoadResult.percentiles.firstIndex { $0.label == "99%" })]
        #expect(p99 == String(Int(result.aggregated.percentileMillis(99).rounded())))
        #expect(html.contains(#"<td class="l">Aggregated</td>"# + values.map { "<td>\($0)</td>" }.joined() + "<td>100</td><td>3</td>"))
        #expect(html.contains(#"<td class="l">/orders/async</td>"#))
    }

    @Test func escapesEveryTextFromTheRun() {
        let html = Self.result(host: #"http://a&b<c>"d'e"#).html
        #expect(!html.contains("<script"))
        #expect(html.contains("HTTP 503 &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"))
        #expect(html.contains("http://a&amp;b&lt;c&gt;&quot;d&#39;e/orders/async"))
        #expect(html.contains(#"<td class="l">503</td><td>3</td>"#))
    }

    @Test func anEmptyRunIsAValidDocumentWithoutNaN() {
        let result = LoadResult(configuration: LoadConfiguration(host: "http://127.0.0.1:8080"), elapsed: 0, endpoints: [],
                                aggregated: EndpointStatistics(method: "", name: "Aggregated"), statusCodes: [:], errors: [], history: [])
        let html = result.html
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.hasSuffix("</html>\n"))
        #expect(!html.contains("<svg"))
        for bad in ["nan", "NaN", "inf", "∞"] { #expect(!html.contains(bad)) }
        #expect(html.contains("–"))
        #expect(html.contains("closed loop, 10 users"))
    }
}
