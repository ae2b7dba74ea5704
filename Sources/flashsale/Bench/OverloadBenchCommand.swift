import ArgumentParser
import AsyncHTTPClient
import FlashCore
import FlashFaults
import FlashPostgres
import FlashTelemetry
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// `flashsale bench overload`: a flash sale at several times what the server can take.
///
/// The accept path takes ~18k orders/s on this 2-core machine, more than a load generator on the
/// same cores can send ten times over. So the backend is slowed instead: the server reaches
/// PostgreSQL through a proxy that delays every chunk of bytes (``TCPProxy``, `--link-delay`),
/// as a database far away or in trouble would. Then:
/// 1. the accept capacity is measured closed loop (`--clients` clients sending back to back);
/// 2. for each of `--multiples`, an open loop sends at that multiple of the capacity for
///    `--seconds` (arrivals at fixed times, whatever the answers), and the bench reports the
///    goodput (202 per second), the p99 answer times of the accepted and of the refused (503
///    `overloaded`), and the server's peak resident memory beside the same after the capacity run.
///
/// Answer times are from when each request was sent; the generator's own lag (sent behind its
/// schedule) is reported as the rate it really offered.
struct OverloadBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overload",
        abstract: "Open-loop load at multiples of the accept capacity of a slowed backend: goodput, answer times of the accepted and the refused, memory.")

    @Option(help: "PostgreSQL URL (a throwaway schema, dropped at the end).") var database: String
    @Option(help: "The delay the proxy adds to every chunk of bytes to and from PostgreSQL.") var linkDelay = "400ms"
    @Option(help: "The server's --admission-deadline.") var admissionDeadline = "5s"
    @Option(help: "Multiples of the measured capacity to send, open loop, comma-separated.") var multiples = "3,10"
    @Option(help: "Seconds per figure.") var seconds: Double = 10
    @Option(help: "Concurrent clients of the capacity measurement (closed loop).") var clients = 1024
    @Flag(help: "Print the table as one JSON object.") var json = false

    func run() async throws {
        guard let delay = Duration(parsing: linkDelay), delay >= .zero else { throw ValidationError("--link-delay must be a duration such as 50ms") }
        guard let deadline = Duration(parsing: admissionDeadline), deadline > .zero else {
            throw ValidationError("--admission-deadline must be a duration such as 2s")
        }
        let factors = multiples.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard !factors.isEmpty, factors.allSatisfy({ $0 > 0 }) else { throw ValidationError("--multiples must list positive numbers, e.g. 3,10") }
        guard seconds >= 1 else { throw ValidationError("--seconds must be at least 1") }
        guard clients > 0 else { throw ValidationError("--clients must be positive") }
        var postgres: PostgresDatabase.Configuration
        do { postgres = try PostgresDatabase.Configuration(url: database) } catch { throw ValidationError("--database: \(error)") }
        guard var components = URLComponents(string: database) else { throw ValidationError("--database: not a URL") }
        // The open loop holds thousands of connections at once.
        _ = ConnectionLimits.connectionCeiling()

        let scratch = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("flashsale-bench-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { SuiteBenchCommand.remove(scratch) }
        let signals = ChildProcess.stopAllOnSignals { SuiteBenchCommand.remove(scratch) }
        defer { signals.forEach { $0.cancel() } }
        var logger = Logger(label: "bench")
        logger.logLevel = .error

        let schema = "flashsale_bench_\(UInt32.random(in: 0...UInt32.max))"
        postgres.schema = schema
        let cleanup = PostgresDatabase(configuration: postgres, logger: logger)
        // The proxy on a thread of its own: the load's event loops must not hold up the link.
        let proxyThread = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let proxy = try await TCPProxy(forwardingTo: postgres.host, port: postgres.port, group: proxyThread)
        let proxying = Task { try await proxy.run() }
        components.host = "127.0.0.1"
        components.port = proxy.port
        components.queryItems = (components.queryItems ?? []).filter { !["schema", "search_path"].contains($0.name) }
            + [URLQueryItem(name: "schema", value: schema)]
        var httpConfiguration = HTTPClient.Configuration(timeout: .init(connect: .seconds(10), read: .seconds(60)))
        httpConfiguration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 16_384)
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)
        var table = BenchTable()
        do {
            let url = components.string ?? database
            // The capacity: the slowed backend with every order let in (a minute's deadline).
            let capacity = try await withServer("capacity", arguments: ["--database", url, "--admission-deadline", "60s"],
                                                proxy: proxy, delay: delay, scratch: scratch, http: http) { server in
                try await measureCapacity(server: server, delay: delay, deadline: deadline, http: http, table: &table)
            }
            _ = try await withServer("overload", arguments: ["--database", url, "--admission-deadline", admissionDeadline],
                                     proxy: proxy, delay: delay, scratch: scratch, http: http) { server in
                try await measureOverload(server: server, capacity: capacity, deadline: deadline, factors: factors, http: http, table: &table)
            }
        } catch {
            try? await http.shutdown()
            proxying.cancel()
            _ = await proxying.result
            try? await proxyThread.shutdownGracefully()
            try? await cleanup.withRunning { try await cleanup.dropSchema() }
            throw error
        }
        try await http.shutdown()
        proxying.cancel()
        _ = await proxying.result
        try await proxyThread.shutdownGracefully()
        try await cleanup.withRunning { try await cleanup.dropSchema() }
        let header = BenchHeader.current(load: "flashsale's own open-loop generator, in the bench process", connections: clients, seconds: seconds)
        print(json ? try table.json(header: header) : table.markdown(header: header))
        if !table.allPassed { throw ExitCode(1) }
    }

    func progress(_ text: String) {
        if !json { FileHandle.standardError.write(Data("bench: \(text)\n".utf8)) }
    }

    /// Starts a server on the proxied database, warms it on the fast link, slows the link, runs
    /// `body`, and stops the server (on the fast link again: its shutdown talks to the database).
    func withServer<T>(_ label: String, arguments: [String], proxy: TCPProxy, delay: Duration, scratch: URL, http: HTTPClient,
                       _ body: (BenchFlashServer) async throws -> T) async throws -> T {
        proxy.mode = .passing
        let server = try await BenchFlashServer.start(label, arguments: arguments, scratch: scratch, http: http)
        do {
            _ = await Self.closedLoop(base: server.base, clients: 16, seconds: 1, http: http)
            proxy.mode = .delayed(delay)
            let result = try await body(server)
            proxy.mode = .passing
            await server.process.stop()
            return result
        } catch {
            proxy.mode = .passing
            await server.process.stop()
            throw error
        }
    }

    /// Orders per second the slowed server takes when it refuses none: `clients` back to back.
    func measureCapacity(server: BenchFlashServer, delay: Duration, deadline: Duration, http: HTTPClient,
                         table: inout BenchTable) async throws -> Double {
        await Self.warm(base: server.base, connections: clients, http: http)
        progress("capacity: \(clients) clients back to back, PostgreSQL \(delay.shortDescription) away each way, nothing refused")
        let capacity = await Self.closedLoop(base: server.base, clients: clients, seconds: seconds, http: http)
        guard capacity.accepted > 0 else { throw BenchError("no order was accepted by the slowed server:\n\(server.process.log)") }
        let line = await Self.admission(base: server.base, http: http)
        let rate = Double(capacity.accepted) / seconds
        table.add(BenchRow(figure: "accept capacity, PostgreSQL \(delay.shortDescription) away (closed loop, \(clients) clients, nothing refused)",
                           value: rate, unit: "orders/s",
                           note: "\(capacity.summary), p99 \(BenchTable.number(capacity.acceptedP99 * 1000)) ms; measured with --admission-deadline 60s, the runs below with \(deadline.shortDescription); the server's line afterwards: \(line)"))
        return rate
    }

    /// The open-loop runs at `factors` times `capacity`.
    func measureOverload(server: BenchFlashServer, capacity capacityRate: Double, deadline: Duration, factors: [Double],
                         http: HTTPClient, table: inout BenchTable) async throws {
        // The connections the runs will hold (the accepted wait up to a deadline), opened
        // beforehand: a burst of thousands of connects would measure the kernel's accept queue
        // and the client's connect retries, not the server.
        await Self.warm(base: server.base, connections: max(clients, Int(capacityRate * deadline.asSeconds * 2)), http: http)
        let mebibyte = 1024.0 * 1024
        // At capacity first: the steady state the multiples are held to (the forecast has timed
        // the slowed backend's groups; memory with the line full).
        var baselineMemory: Double?
        for factor in [1] + factors where factor > 0 {
            let rate = capacityRate * factor
            let name = "\(BenchTable.number(factor))× capacity"
            progress("open loop at \(name): \(BenchTable.number(rate)) orders/s for \(BenchTable.number(seconds)) s")
            let peak = Mutex(0)
            let sampling = Task {
                while !Task.isCancelled {
                    if let bytes = server.process.residentBytes { peak.withLock { $0 = max($0, bytes) } }
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
            let before = await Self.refusalBuckets(base: server.base, http: http)
            let run = await Self.openLoop(base: server.base, rate: rate, seconds: seconds, http: http)
            sampling.cancel()
            let after = await Self.refusalBuckets(base: server.base, http: http)
            let serverP99 = Self.p99Bound(before: before, after: after)
            let line = await Self.admission(base: server.base, http: http)
            let memory = Double(peak.withLock { $0 }) / mebibyte
            let overloaded = factor > 1
            table.add(BenchRow(figure: "\(name): offered (open loop)", value: Double(run.sentInTime) / seconds, unit: "req/s",
                               ceiling: (name: "intended", value: rate), target: .ratioAtLeast(0.9),
                               note: "\(run.summary); the server's line afterwards: \(line)"))
            table.add(BenchRow(figure: "\(name): goodput (202 per second)", value: Double(run.accepted) / seconds, unit: "orders/s",
                               ceiling: (name: "capacity", value: capacityRate), target: overloaded ? .ratioAtLeast(0.9) : nil))
            table.add(BenchRow(figure: "\(name): accepted p99", value: run.acceptedP99 * 1000, unit: "ms",
                               target: overloaded ? .atMost(deadline.asSeconds * 1000) : nil,
                               note: overloaded ? nil : "this first run begins as the link slows: until a slow group has ended, the forecast knows only fast ones and lets orders in that then wait up to the deadline for their transaction to begin, and are answered after it"))
            if run.refused > 0 || overloaded {
                table.add(BenchRow(figure: "\(name): refused (503 overloaded) p99, at the server", value: serverP99 * 1000, unit: "ms",
                                   target: overloaded ? .atMost(5) : nil,
                                   note: "the upper bound of the bucket holding the 99th percentile of the server's own durations of POST /orders/async answered 503 (flashsale_http_request_duration_seconds)"))
                table.add(BenchRow(figure: "\(name): refused (503 overloaded) p50, at the client", value: run.refusedP50 * 1000, unit: "ms",
                                   note: "p99 \(BenchTable.number(run.refusedP99 * 1000)) ms: from the send to the answer read in the bench process, which shares the two cores with the server, PostgreSQL and the proxy and takes a placement group's hundreds of answers at once"))
            }
            table.add(BenchRow(figure: "\(name): server RSS, peak", value: memory, unit: "MiB",
                               ceiling: baselineMemory.map { (name: "at capacity", value: $0) }, target: overloaded ? .ratioAtMost(1.5) : nil))
            if baselineMemory == nil { baselineMemory = memory }
            try await Task.sleep(for: deadline * 2)
        }
    }

    /// What one run saw.
    struct Run: Sendable {
        var sent = 0
        /// Sent within the run's time (a generator behind its schedule sends some later).
        var sentInTime = 0
        var accepted = 0
        var refused = 0
        /// Other answers and errors, by what they were.
        var other: [String: Int] = [:]
        var acceptedSeconds: [Double] = []
        var refusedSeconds: [Double] = []

        var acceptedP99: Double { Self.p99(acceptedSeconds) }
        var refusedP99: Double { Self.p99(refusedSeconds) }
        var refusedP50: Double { Self.percentile(0.5, of: refusedSeconds) }

        static func p99(_ values: [Double]) -> Double { percentile(0.99, of: values) }

        static func percentile(_ fraction: Double, of values: [Double]) -> Double {
            guard !values.isEmpty else { return 0 }
            let sorted = values.sorted()
            return sorted[max(0, min(sorted.count - 1, Int((Double(sorted.count) * fraction).rounded(.up)) - 1))]
        }

        var summary: String {
            let others = other.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            let otherCount = other.values.reduce(0, +)
            return "\(sent) sent: \(accepted) accepted (202), \(refused) refused (503 overloaded), \(otherCount) other" + (others.isEmpty ? "" : " (\(others))")
        }

        mutating func record(_ answer: Answer, took: Double) {
            switch answer {
            case .accepted:
                accepted += 1
                acceptedSeconds.append(took)
            case .refused:
                refused += 1
                refusedSeconds.append(took)
            case let .other(what):
                other[what, default: 0] += 1
            }
        }
    }

    /// A run's figures as its requests end.
    final class Tally: Sendable {
        let state = Mutex(Run())
    }

    enum Answer: Sendable {
        case accepted, refused
        case other(String)
    }

    /// Opens `connections` keep-alive connections to the server (a `GET /health` on each at once),
    /// left idle in the client's pool for the next run.
    static func warm(base: String, connections: Int, http: HTTPClient) async {
        await withDiscardingTaskGroup { group in
            for _ in 0..<connections {
                group.addTask {
                    if let response = try? await http.execute(HTTPClientRequest(url: base + "/health"), timeout: .seconds(30)) {
                        _ = try? await response.body.collect(upTo: 1 << 16)
                    }
                }
            }
        }
    }

    /// The server's histogram of `POST /orders/async` answered 503, from `/metrics`: cumulative
    /// counts by bucket upper bound (seconds; +Inf included).
    static func refusalBuckets(base: String, http: HTTPClient) async -> [Double: Double] {
        guard let response = try? await http.execute(HTTPClientRequest(url: base + "/metrics"), timeout: .seconds(10)),
              let body = try? await response.body.collect(upTo: 16 << 20) else { return [:] }
        var buckets: [Double: Double] = [:]
        for line in String(buffer: body).split(separator: "\n")
        where line.hasPrefix("flashsale_http_request_duration_seconds_bucket{") && line.contains(#"route="/orders/async""#)
            && line.contains(#"status="503""#) && line.contains(#"method="POST""#) {
            guard let le = line.range(of: #"le=""#), let close = line[le.upperBound...].firstIndex(of: "\""),
                  let count = line.split(separator: " ").last.flatMap({ Double($0) }) else { continue }
            let bound = line[le.upperBound..<close]
            buckets[bound == "+Inf" ? .infinity : Double(bound) ?? .nan] = count
        }
        return buckets
    }

    /// The upper bound of the bucket that holds the 99th percentile of the answers between two
    /// readings of ``refusalBuckets(base:http:)``.
    static func p99Bound(before: [Double: Double], after: [Double: Double]) -> Double {
        let counts = after.keys.sorted().map { ($0, after[$0]! - (before[$0] ?? 0)) }
        guard let total = counts.last?.1, total > 0 else { return 0 }
        return counts.first { $0.1 >= total * 0.99 }?.0 ?? .infinity
    }

    /// The server's admission figures (`/stats`), as one line of JSON.
    static func admission(base: String, http: HTTPClient) async -> String {
        guard let response = try? await http.execute(HTTPClientRequest(url: base + "/stats"), timeout: .seconds(10)),
              let body = try? await response.body.collect(upTo: 1 << 20),
              let stats = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any],
              let admission = stats["admission"],
              let text = try? JSONSerialization.data(withJSONObject: admission, options: [.sortedKeys]) else { return "unread" }
        return String(decoding: text, as: UTF8.self)
    }

    /// One `POST /orders/async` (a new order each time): how it was answered.
    static func send(base: String, http: HTTPClient) async -> Answer {
        var request = HTTPClientRequest(url: base + "/orders/async")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: SuiteBenchCommand.orderBody))
        do {
            let response = try await http.execute(request, timeout: .seconds(60))
            let body = try await response.body.collect(upTo: 1 << 16)
            switch response.status.code {
            case 202: return .accepted
            case 503:
                let code = (try? JSONValue.parse(body.readableBytesView))?["error"]?["code"]
                if case .string("overloaded")? = code { return .refused }
                return .other("503 \(code.map { "\($0)" } ?? "")")
            default: return .other("\(response.status.code)")
            }
        } catch {
            return .other("error: \(error)")
        }
    }

    /// `clients` clients sending back to back for `seconds`; one refused waits a second (its
    /// Retry-After) before its next order, as a well-behaved client does.
    static func closedLoop(base: String, clients: Int, seconds: Double, http: HTTPClient) async -> Run {
        let run = Tally()
        let end = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        await withDiscardingTaskGroup { group in
            for _ in 0..<clients {
                group.addTask {
                    while ContinuousClock.now < end {
                        let sent = ContinuousClock.now
                        let answer = await send(base: base, http: http)
                        let took = (ContinuousClock.now - sent).asSeconds
                        run.state.withLock { $0.sent += 1; $0.record(answer, took: took) }
                        if case .accepted = answer { continue }
                        try? await Task.sleep(for: .seconds(1))
                    }
                }
            }
        }
        return run.state.withLock { $0 }
    }

    /// Requests at `rate` per second, at fixed times, for `seconds`, whatever the answers; waits
    /// for every answer.
    static func openLoop(base: String, rate: Double, seconds: Double, http: HTTPClient) async -> Run {
        let run = Tally()
        let start = ContinuousClock.now
        let total = Int(rate * seconds)
        await withDiscardingTaskGroup { group in
            for index in 0..<total {
                let intended = start + .nanoseconds(Int64(Double(index) / rate * 1e9))
                if intended > .now { try? await Task.sleep(until: intended, clock: .continuous) }
                group.addTask {
                    let sent = ContinuousClock.now
                    let inTime = (sent - start).asSeconds < seconds
                    let answer = await send(base: base, http: http)
                    let took = (ContinuousClock.now - sent).asSeconds
                    run.state.withLock {
                        $0.sent += 1
                        if inTime { $0.sentInTime += 1 }
                        $0.record(answer, took: took)
                    }
                }
            }
        }
        return run.state.withLock { $0 }
    }
}
