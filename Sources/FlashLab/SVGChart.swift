import Foundation

/// Line and bar charts as standalone SVG files, readable in any browser.
///
/// Hand-written on purpose: no charting package is among the project's dependencies, and the
/// lab needs only axes, polylines, bars and a legend.
public struct SVGChart: Sendable {
    public struct Series: Sendable {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public var dashed: Bool
        public init(name: String, points: [(x: Double, y: Double)], dashed: Bool = false) {
            self.name = name
            self.points = points
            self.dashed = dashed
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var width = 900.0
    public var height = 520.0

    public init(title: String, xLabel: String, yLabel: String) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
    }

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]
    let left = 80.0, right = 190.0, top = 50.0, bottom = 60.0

    /// A line chart of `series`; `logX` plots x on a log scale.
    public func lines(_ series: [Series], logX: Bool = false) -> String {
        let all = series.flatMap(\.points)
        let xs = all.map { logX ? log10(max($0.x, 1e-9)) : $0.x }
        let (x0, x1) = logX ? (floor(xs.min() ?? 0), max(ceil(xs.max() ?? 1), floor(xs.min() ?? 0) + 1))
                            : Self.range(xs.min() ?? 0, xs.max() ?? 1, zeroBased: true)
        // Decades on a log axis; round steps on a linear one.
        let xTicks = logX ? stride(from: x0, through: x1, by: 1).map { $0 } : Self.ticks(x0, x1)
        let (y0, y1) = Self.range(0, all.map(\.y).max() ?? 1, zeroBased: true)
        var body = frame(xTicks: xTicks.map { ($0, logX ? Self.label(pow(10, $0)) : Self.label($0)) },
                         yTicks: Self.ticks(y0, y1).map { ($0, Self.label($0)) }, x0: x0, x1: x1, y0: y0, y1: y1)
        for (index, line) in series.enumerated() {
            let color = Self.palette[index % Self.palette.count]
            let path = line.points.map { point -> String in
                let x = px(logX ? log10(max(point.x, 1e-9)) : point.x, x0, x1)
                let y = py(point.y, y0, y1)
                return String(format: "%.1f,%.1f", x, y)
            }.joined(separator: " ")
            body += #"<polyline fill="none" stroke="\#(color)" stroke-width="2"\#(line.dashed ? #" stroke-dasharray="6 4""# : "") points="\#(path)"/>"#
            if line.points.count <= 12 {
                for point in line.points {
                    body += String(format: #"<circle cx="%.1f" cy="%.1f" r="3.5" fill="%@"/>"#,
                                   px(logX ? log10(max(point.x, 1e-9)) : point.x, x0, x1), py(point.y, y0, y1), color)
                }
            }
            body += legend(index: index, name: line.name, color: color, dashed: line.dashed)
        }
        return document(body)
    }

    /// A grouped bar chart: one group per category, one bar per series.
    public func bars(categories: [String], series: [(name: String, values: [Double])]) -> String {
        let maxValue = series.flatMap(\.values).max() ?? 1
        let (y0, y1) = Self.range(0, maxValue, zeroBased: true)
        var body = frame(xTicks: [], yTicks: Self.ticks(y0, y1).map { ($0, Self.label($0)) }, x0: 0, x1: 1, y0: y0, y1: y1)
        let plotWidth = width - left - right
        let groupWidth = plotWidth / Double(max(1, categories.count))
        let barWidth = groupWidth * 0.8 / Double(max(1, series.count))
        for (c, category) in categories.enumerated() {
            let groupStart = left + groupWidth * Double(c) + groupWidth * 0.1
            for (s, item) in series.enumerated() where c < item.values.count {
                let value = item.values[c]
                let y = py(value, y0, y1)
                body += String(format: #"<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%@"><title>%@: %@</title></rect>"#,
                               groupStart + barWidth * Double(s), y, barWidth * 0.92, max(0, height - bottom - y),
                               Self.palette[s % Self.palette.count], Self.escape(item.name), Self.label(value))
                body += String(format: #"<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle">%@</text>"#,
                               groupStart + barWidth * (Double(s) + 0.46), y - 3, Self.label(value))
            }
            body += String(format: #"<text x="%.1f" y="%.1f" font-size="12" text-anchor="middle">%@</text>"#,
                           groupStart + groupWidth * 0.4, height - bottom + 18, Self.escape(category))
        }
        for (s, item) in series.enumerated() {
            body += legend(index: s, name: item.name, color: Self.palette[s % Self.palette.count], dashed: false)
        }
        return document(body)
    }

    // MARK: Pieces

    func px(_ x: Double, _ x0: Double, _ x1: Double) -> Double { left + (x - x0) / max(x1 - x0, 1e-12) * (width - left - right) }
    func py(_ y: Double, _ y0: Double, _ y1: Double) -> Double { height - bottom - (y - y0) / max(y1 - y0, 1e-12) * (height - top - bottom) }

    func frame(xTicks: [(Double, String)], yTicks: [(Double, String)], x0: Double, x1: Double, y0: Double, y1: Double) -> String {
        var out = #"<rect x="0" y="0" width="\#(width)" height="\#(height)" fill="white"/>"#
        out += #"<text x="\#(width / 2)" y="28" font-size="17" font-weight="bold" text-anchor="middle">\#(Self.escape(title))</text>"#
        out += String(format: #"<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>"#, left, height - bottom, width - right, height - bottom)
        out += String(format: #"<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>"#, left, top, left, height - bottom)
        for (value, text) in yTicks {
            let y = py(value, y0, y1)
            out += String(format: ##"<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>"##, left, y, width - right, y)
            out += String(format: #"<text x="%.1f" y="%.1f" font-size="11" text-anchor="end">%@</text>"#, left - 6, y + 4, text)
        }
        for (value, text) in xTicks {
            let x = px(value, x0, x1)
            out += String(format: #"<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>"#, x, height - bottom, x, height - bottom + 5)
            out += String(format: #"<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%@</text>"#, x, height - bottom + 18, text)
        }
        out += #"<text x="\#(left + (width - left - right) / 2)" y="\#(height - 15)" font-size="13" text-anchor="middle">\#(Self.escape(xLabel))</text>"#
        out += #"<text x="18" y="\#(top + (height - top - bottom) / 2)" font-size="13" text-anchor="middle" transform="rotate(-90 18 \#(top + (height - top - bottom) / 2))">\#(Self.escape(yLabel))</text>"#
        return out
    }

    func legend(index: Int, name: String, color: String, dashed: Bool) -> String {
        let y = top + 10 + Double(index) * 20
        let x = width - right + 15
        return String(format: #"<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%@" stroke-width="3"%@/><text x="%.1f" y="%.1f" font-size="12">%@</text>"#,
                      x, y, x + 22, y, color, dashed ? #" stroke-dasharray="6 4""# : "", x + 28, y + 4, Self.escape(name))
    }

    func document(_ body: String) -> String {
        #"<svg xmlns="http://www.w3.org/2000/svg" width="\#(Int(width))" height="\#(Int(height))" viewBox="0 0 \#(Int(width)) \#(Int(height))" font-family="Helvetica, Arial, sans-serif">"#
            + body + "</svg>\n"
    }

    static func range(_ low: Double, _ high: Double, zeroBased: Bool) -> (Double, Double) {
        let lower = zeroBased ? min(0, low) : low
        var upper = high
        if upper <= lower { upper = lower + 1 }
        let step = niceStep((upper - lower) / 5)
        return (floor(lower / step) * step, ceil(upper / step) * step)
    }

    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0 else { return 1 }
        let magnitude = pow(10, floor(log10(raw)))
        for factor in [1.0, 2.0, 2.5, 5.0, 10.0] where raw <= factor * magnitude { return factor * magnitude }
        return 10 * magnitude
    }

    static func ticks(_ low: Double, _ high: Double) -> [Double] {
        let step = niceStep((high - low) / 5)
        return stride(from: low, through: high + step * 1e-6, by: step).map { $0 }
    }

    static func label(_ value: Double) -> String {
        if abs(value) >= 1_000_000 { return String(format: "%.1fM", value / 1_000_000) }
        if abs(value) >= 10_000 { return String(format: "%.0fk", value / 1000) }
        if value == value.rounded() { return String(Int(value)) }
        return abs(value) < 1 ? String(format: "%.2f", value) : String(format: "%.1f", value)
    }

    /// Text made safe for SVG and HTML content and quoted attribute values (the charts and the
    /// load report's page share it).
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }
}
