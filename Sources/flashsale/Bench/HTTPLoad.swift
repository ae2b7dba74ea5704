import FlashLab
import Foundation

/// The load of `flashsale bench`'s HTTP figures: wrk when it is installed (the standard tool,
/// in C, so the client's cost is known and small), else the project's own load generator.
struct HTTPLoad: Sendable {
    enum Tool: Sendable {
        /// wrk at this path.
        case wrk(String)
        /// ``LoadGenerator`` in this process.
        case own
    }

    /// What one figure sends.
    enum Request: Sendable {
        /// The same POST body every time.
        case post(path: String, body: String)
        /// `POST /buy` with a new `userId` each time.
        case buy
        /// GET, cycling over these paths.
        case get(paths: [String])
    }

    /// One figure's measurement.
    struct Result: Sendable {
        var requests: Int
        var seconds: Double
        var p50Millis: Double
        var p99Millis: Double
        /// Answers outside 2xx/3xx.
        var non2xx: Int
        /// Connect, read, write errors and timeouts.
        var errors: Int
        /// Answers that were 400, when the figure counts them (the server's own count).
        var status400: Int?
        var rate: Double { Double(requests) / max(seconds, 1e-9) }
    }

    let tool: Tool
    let connections: Int
    let seconds: Double
    /// Where wrk's scripts are written.
    let scratch: URL

    /// wrk when it is on PATH (unless `preferOwn`), else the own generator.
    static func choose(preferOwn: Bool, connections: Int, seconds: Double, scratch: URL) -> HTTPLoad {
        let wrk = preferOwn ? nil : ChildProcess.find("wrk")
        return HTTPLoad(tool: wrk.map(Tool.wrk) ?? .own, connections: connections, seconds: seconds, scratch: scratch)
    }

    var threads: Int { max(1, min(ProcessInfo.processInfo.activeProcessorCount, connections)) }

    /// Says which tool, as the table's header shows it.
    var description: String {
        switch tool {
        case let .wrk(path): return "wrk (\(path) -t\(threads) -c\(connections))"
        case .own:
            let why = ChildProcess.find("wrk") == nil ? "wrk is not installed" : "--generator own"
            return "flashsale's own load generator (\(why)): closed loop, \(connections) connections, no think time, in the bench process"
        }
    }

    /// Measures `request` against `base` (`http://127.0.0.1:port`).
    func run(base: String, _ request: Request) async throws -> Result {
        switch tool {
        case let .wrk(path): return try await runWrk(path, base: base, request)
        case .own: return try await runOwn(base: base, request)
        }
    }

    // MARK: wrk

    private func runWrk(_ wrk: String, base: String, _ request: Request) async throws -> Result {
        let script = scratch.appendingPathComponent("wrk-\(UUID().uuidString).lua")
        defer { try? FileManager.default.removeItem(at: script) }
        let path: String
        switch request {
        case let .post(requestPath, body): path = requestPath; try Self.postScript(body: body).write(to: script, atomically: true, encoding: .utf8)
        case .buy: path = "/buy"; try Self.buyScript.write(to: script, atomically: true, encoding: .utf8)
        case let .get(paths): path = paths.first ?? "/"; try Self.getScript(paths: paths).write(to: script, atomically: true, encoding: .utf8)
        }
        let arguments = ["-t\(threads)", "-c\(connections)", "-d\(Int(seconds.rounded(.up)))s", "-s", script.path, base + path]
        let run = try await ChildProcess.run(wrk, arguments, scratch: scratch)
        guard run.status == 0, let line = run.output.split(separator: "\n").first(where: { $0.hasPrefix("FLASHSALE ") }) else {
            throw BenchError("wrk failed (exit \(run.status)): \(run.output)")
        }
        let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard fields.count == 9 else { throw BenchError("unexpected wrk summary: \(line)") }
        return Result(requests: Int(fields[0]), seconds: fields[1] / 1e6, p50Millis: fields[7] / 1000, p99Millis: fields[8] / 1000,
                      non2xx: Int(fields[5]), errors: Int(fields[2] + fields[3] + fields[4] + fields[6]))
    }

    /// Every script ends with this: one line of exact figures (latencies in µs) for the bench to read.
    static let summary = """
        done = function(summary, latency, requests)
          io.write(string.format("FLASHSALE %d %d %d %d %d %d %d %d %d\\n", summary.requests, summary.duration,
            summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
            latency:percentile(50), latency:percentile(99)))
        end
        """

    static func postScript(body: String) -> String {
        """
        wrk.method = "POST"
        wrk.body = \(luaString(body))
        wrk.headers["Content-Type"] = "application/json"
        \(summary)
        """
    }

    /// A new userId per request: each wrk thread counts in its own range.
    static let buyScript = """
        local threads = 0
        function setup(thread) thread:set("base", threads * 100000000); threads = threads + 1 end
        function init(args) counter = base end
        wrk.method = "POST"
        wrk.headers["Content-Type"] = "application/json"
        request = function()
          counter = counter + 1
          return wrk.format(nil, nil, nil, '{"userId": ' .. counter .. '}')
        end
        \(summary)
        """

    static func getScript(paths: [String]) -> String {
        """
        paths = { \(paths.map(luaString).joined(separator: ", ")) }
        index = 0
        request = function()
          index = index % #paths + 1
          return wrk.format("GET", paths[index])
        end
        \(summary)
        """
    }

    /// A Lua string literal (the bodies are ASCII JSON; quotes and backslashes escaped).
    static func luaString(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    // MARK: The own generator

    private func runOwn(base: String, _ request: Request) async throws -> Result {
        var configuration = LoadConfiguration(host: base)
        switch request {
        case let .post(path, body):
            configuration.endpoint = .path(path, method: "POST")
            configuration.body = body
        case .buy:
            configuration.endpoint = .buy
        case let .get(paths):
            // One path: the generator sends the same request every time.
            configuration.endpoint = .path(paths.first ?? "/", method: "GET")
        }
        configuration.users = connections
        configuration.spawnRate = 1e9
        configuration.wait = 0...0
        configuration.duration = seconds
        configuration.timeout = 10
        let result = try await LoadGenerator(configuration: configuration).run()
        let non2xx = result.statusCodes.filter { $0.key >= 400 }.reduce(0) { $0 + $1.value }
        let answered = result.statusCodes.values.reduce(0, +)
        return Result(requests: result.aggregated.requests, seconds: result.elapsed,
                      p50Millis: result.aggregated.percentileMillis(50), p99Millis: result.aggregated.percentileMillis(99),
                      non2xx: non2xx, errors: result.aggregated.requests - answered)
    }
}

/// A benchmark that could not run.
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

