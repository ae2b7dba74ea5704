import Foundation

extension LoadResult {
    /// The run as one self-contained HTML5 page: what was sent where and how hard, requests and
    /// failures per second and the response times' p50/p95/p99 over time (inline SVG charts),
    /// the percentile table (the same figures as `summary`), status codes and errors.
    ///
    /// Nothing is fetched from elsewhere (inline `<style>` only, no scripts), every text that
    /// comes from the run (host, paths, error messages) is escaped, and a figure that cannot be
    /// computed (no requests, no time elapsed) reads "–". A run without history has no charts.
    public var html: String {
        let endpoint = configuration.endpoint
        let a = aggregated
        let failed = a.requests == 0 ? "–" : String(format: "%.2f%%", Double(a.failures) / Double(a.requests) * 100)
        let timed = elapsed.isFinite && elapsed > 0
        var facts: [(String, String)] = [
            ("Mode", configuration.rate.map { "open loop at \($0.isFinite ? Format.number($0) : "–")/s" }
                ?? "closed loop, \(configuration.users) user\(configuration.users == 1 ? "" : "s")"),
            ("Elapsed", elapsed.isFinite ? Format.seconds(elapsed) : "–"),
            ("Requests", String(a.requests)),
            ("Failures", "\(a.failures) (\(failed))"),
            ("Requests/s", timed ? Self.number(requestsPerSecond) : "–"),
            ("Failures/s", timed ? Self.number(failuresPerSecond) : "–"),
        ]
        if let first = history.first, (first.unixTime - first.elapsed).isFinite {
            let started = Date(timeIntervalSince1970: first.unixTime - first.elapsed)
            facts.append(("Started", ISO8601DateFormatter().string(from: started)))
        }
        var page = [
            "<!DOCTYPE html>", #"<html lang="en">"#, "<head>", #"<meta charset="utf-8">"#,
            #"<meta name="viewport" content="width=device-width, initial-scale=1">"#,
            "<title>flashsale load report</title>", "<style>\(Self.style)</style>", "</head>", "<body>",
            "<header>", "<h1>flashsale load report</h1>",
            "<p><code>\(SVGChart.escape(endpoint.method + " " + configuration.host + endpoint.path))</code></p>",
            "<dl>" + facts.map { "<div><dt>\($0.0)</dt><dd>\(SVGChart.escape($0.1))</dd></div>" }.joined() + "</dl>",
            "</header>", "<h2>Over time</h2>",
        ]
        if history.isEmpty {
            page.append(#"<p class="empty">No per-second samples were recorded.</p>"#)
        } else {
            page += [throughputChart, latencyChart]
        }
        page += ["<h2>Response time percentiles (ms)</h2>", percentileTable,
                 "<h2>Status codes</h2>", statusTable, "<h2>Errors</h2>", errorTable, "</body>", "</html>"]
        return page.joined(separator: "\n") + "\n"
    }

    // MARK: Charts (SVGChart, inline)

    private var throughputChart: String {
        SVGChart(title: "Requests and failures per second", xLabel: "seconds elapsed", yLabel: "per second").lines([
            SVGChart.Series(name: "requests/s", points: Self.thin(history.map { ($0.elapsed, $0.requestsPerSecond) })),
            SVGChart.Series(name: "failures/s", points: Self.thin(history.map { ($0.elapsed, $0.failuresPerSecond) })),
        ])
    }

    /// Each second's own percentiles; a second without an answer has none, so it has no point.
    private var latencyChart: String {
        let answered = history.filter { $0.window.requests > 0 }
        let series = [(50.0, "p50"), (95.0, "p95"), (99.0, "p99")].map { percentile, name in
            SVGChart.Series(name: name, points: Self.thin(answered.map { ($0.elapsed, $0.window.percentileMillis(percentile)) }))
        }
        return SVGChart(title: "Response time per second", xLabel: "seconds elapsed", yLabel: "milliseconds").lines(series)
    }

    /// Finite points only, at most about `limit` of them (one in every n, and the last).
    private static func thin(_ points: [(Double, Double)], limit: Int = 600) -> [(x: Double, y: Double)] {
        let finite = points.filter { $0.0.isFinite && $0.1.isFinite }
        let step = max(1, finite.count / limit)
        var out = stride(from: 0, to: finite.count, by: step).map { (x: finite[$0].0, y: finite[$0].1) }
        if let last = finite.last, out.last?.x != last.0 { out.append((x: last.0, y: last.1)) }
        return out
    }

    // MARK: Tables

    private var percentileTable: String {
        let head = #"<tr><th class="l">Type</th><th class="l">Name</th>"#
            + Self.percentiles.map { "<th>\(SVGChart.escape($0.label))</th>" }.joined() + "<th># reqs</th><th># fails</th></tr>"
        let rows = endpoints.map { percentileRow($0.method, $0) } + [percentileRow("", aggregated, total: true)]
        return Self.table(head: head, rows: rows)
    }

    /// Whole milliseconds, rounded as `summary` rounds them; "–" for a name without requests.
    private func percentileRow(_ type: String, _ stats: EndpointStatistics, total: Bool = false) -> String {
        let cells = Self.percentiles.map { percentile -> String in
            let value = stats.percentileMillis(percentile.value)
            return stats.requests == 0 || !value.isFinite ? "–" : String(Int(value.rounded()))
        }
        return (total ? #"<tr class="total">"# : "<tr>")
            + #"<td class="l">\#(SVGChart.escape(type))</td><td class="l">\#(SVGChart.escape(stats.name))</td>"#
            + cells.map { "<td>\($0)</td>" }.joined() + "<td>\(stats.requests)</td><td>\(stats.failures)</td></tr>"
    }

    private var statusTable: String {
        let total = statusCodes.values.reduce(0, +)
        let rows = statusCodes.sorted { $0.key < $1.key }.map { code, count in
            let share = total == 0 ? "–" : String(format: "%.2f%%", Double(count) / Double(total) * 100)
            return #"<tr><td class="l">\#(code)</td><td>\#(count)</td><td>\#(share)</td></tr>"#
        }
        return Self.table(head: #"<tr><th class="l">Status</th><th>Responses</th><th>Share</th></tr>"#, rows: rows, columns: 3)
    }

    private var errorTable: String {
        let rows = errors.map { error in
            "<tr>" + [error.method, error.name, error.error].map { #"<td class="l">\#(SVGChart.escape($0))</td>"# }.joined()
                + "<td>\(error.count)</td></tr>"
        }
        return Self.table(head: #"<tr><th class="l">Method</th><th class="l">Name</th><th class="l">Error</th><th>Occurrences</th></tr>"#,
                          rows: rows, columns: 4)
    }

    /// A table, or one row reading "none" when there is nothing to list.
    private static func table(head: String, rows: [String], columns: Int = 0) -> String {
        let body = rows.isEmpty ? #"<tr><td class="l empty" colspan="\#(columns)">none</td></tr>"# : rows.joined(separator: "\n")
        return #"<div class="wide"><table><thead>\#(head)</thead><tbody>"# + "\n" + body + "\n</tbody></table></div>"
    }

    // MARK: Text

    /// Two decimals, as `summary` prints rates; "–" for what cannot be computed.
    private static func number(_ value: Double) -> String {
        value.isFinite ? String(format: "%.2f", value) : "–"
    }


    private static let style = """
        body{font:14px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;max-width:1000px;margin:2rem auto;padding:0 1rem}
        h1{font-size:1.6rem;margin:0 0 .3rem}
        h2{font-size:1.15rem;margin:2rem 0 .6rem;padding-bottom:.2rem;border-bottom:1px solid #ddd}
        code{font:13px ui-monospace,Menlo,Consolas,monospace;background:#f3f3f5;padding:.1rem .35rem;border-radius:3px;word-break:break-all}
        dl{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:.6rem;margin:1rem 0}
        dl div{background:#f7f7f9;border:1px solid #e3e3e8;border-radius:6px;padding:.45rem .7rem}
        dt{font-size:.75rem;color:#666;text-transform:uppercase;letter-spacing:.04em}
        dd{margin:0;font-size:1.05rem;font-weight:600}
        .wide{overflow-x:auto}
        table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
        th,td{padding:.3rem .55rem;border-bottom:1px solid #e5e5e5;text-align:right;white-space:nowrap}
        th{background:#f3f3f5;font-weight:600}
        .l{text-align:left;white-space:normal;word-break:break-word}
        tr.total td{font-weight:600;border-top:2px solid #999}
        .empty{color:#777;font-style:italic}
        svg{display:block;max-width:100%;height:auto;margin:.5rem 0}
        """
}
