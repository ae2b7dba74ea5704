import ArgumentParser
import AsyncHTTPClient
import FlashCore
import FlashPostgres
import FlashQueue
import FlashSQLite
import Foundation
import Logging
import NIOCore

/// `flashsale bench`: every performance claim, each beside its ceiling measured in the same run.
///
/// Absolute figures drift between runs and machines; ratios to the same machine's ceilings, in
/// the same run, do not (much). So one invocation starts its own servers on free loopback ports
/// and measures, in order:
/// 1. the ceilings: nginx answering a fixed 202 with the accept's body (when nginx is
///    installed) and the same flashsale server's `GET /health`;
/// 2. `POST /orders/async`, `GET /orders/{id}`, `POST /buy` (sales, then refusals);
/// 3. the embedded queue's full cycle and concurrent sends;
/// 4. draining a backlog with an instant gateway, and the worker pool against W/L;
/// 5. with `--database`, the same on PostgreSQL.
/// Peers measured outside (Redis, pgbench: `scripts/bench-peers`) come in with `--peer`.
struct SuiteBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "all",
        abstract: "Measure every figure beside its ceilings, in one run (the default of `flashsale bench`).",
        discussion: """
            Build it in release mode: `swift run -c release flashsale bench`. Load comes from wrk when it is on PATH, \
            else from flashsale's own generator; the table says which. nginx, when installed, is the HTTP ceiling. \
            scripts/bench-peers installs wrk, nginx, Redis and PostgreSQL and runs this with the peers' figures.
            """)

    @Flag(help: "A short run (about a minute): 3 s per HTTP figure, fewer worker-pool sizes.") var quick = false
    @Flag(help: "Print the table as one JSON object.") var json = false
    @Option(help: "PostgreSQL URL: add the PostgreSQL rows (a throwaway schema, dropped at the end).") var database: String?
    @Option(help: "Connections of the HTTP load.") var connections = 64
    @Option(help: "Seconds per HTTP figure [default 10, --quick 3].") var seconds: Double?
    @Option(help: "HTTP load generator: auto (wrk when installed), wrk, or own.") var generator = "auto"
    @Option(help: "A peer's figure measured outside, NAME=PER_SECOND: redis-eval, pgbench-insert, pgbench-dequeue.")
    var peer: [String] = []

    /// The accept path's body: the seeds' order, two items.
    static let orderBody = #"{"customer_id": 1234, "items": [{"product_id": "PROD-001", "quantity": 2, "price": 49.99}, {"product_id": "PROD-002", "quantity": 1, "price": 19.99}]}"#

    func validate() throws {
        guard ["auto", "wrk", "own"].contains(generator) else { throw ValidationError("--generator must be auto, wrk or own") }
        guard connections > 0 else { throw ValidationError("--connections must be positive") }
        if let seconds, seconds < 1 { throw ValidationError("--seconds must be at least 1") }
        _ = try peers()
    }

    /// Removes the run's folder. Tried a few times: on Ctrl-C the signal handler and the failing
    /// run both remove it, and a server still shutting down can write its WAL meanwhile.
    static func remove(_ folder: URL) {
        for _ in 0..<10 where FileManager.default.fileExists(atPath: folder.path) {
            try? FileManager.default.removeItem(at: folder)
            usleep(50_000)
        }
    }

    func peers() throws -> [String: Double] {
        var peers: [String: Double] = [:]
        for item in peer {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, ["redis-eval", "pgbench-insert", "pgbench-dequeue"].contains(parts[0]), let value = Double(parts[1]), value > 0 else {
                throw ValidationError("--peer must be redis-eval=N, pgbench-insert=N or pgbench-dequeue=N (per second), not '\(item)'")
            }
            peers[parts[0]] = value
        }
        return peers
    }

    func run() async throws {
        let peers = try peers()
        let seconds = seconds ?? (quick ? 3 : 10)
        let scratch = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("flashsale-bench-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { Self.remove(scratch) }
        // Ctrl-C or a SIGTERM stops the run's servers and load too, and removes its files (a
        // PostgreSQL schema of an interrupted --database run is left: its name says flashsale_bench).
        let signals = ChildProcess.stopAllOnSignals { Self.remove(scratch) }
        defer { signals.forEach { $0.cancel() } }
        if generator == "wrk", ChildProcess.find("wrk") == nil { throw ValidationError("--generator wrk: wrk is not installed (apt-get install wrk)") }
        let load = HTTPLoad.choose(preferOwn: generator == "own", connections: connections, seconds: seconds, scratch: scratch)
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(timeout: .init(connect: .seconds(5), read: .seconds(30))))
        var suite = BenchSuite(load: load, scratch: scratch, http: http, logger: logger, quick: quick, peers: peers, quiet: json)
        if case .own = load.tool {
            suite.table.notes.append("the load generator runs in this process, in Swift, on the same cores: it can be the limit itself (a ratio near 1 to nginx says so), and GET /orders/{id} asks for one order over and over (wrk cycles through 500); install wrk for the standard figures")
        }
        do {
            try await suite.httpRows(serverArguments: ["--data", scratch.appendingPathComponent("embedded.db").path], label: nil)
            try await suite.queueRows()
            try await suite.drainRow()
            try await suite.workerRows()
            if let database { try await suite.postgresRows(url: database) }
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
        let header = BenchHeader.current(load: load.description, connections: connections, seconds: seconds)
        print(json ? try suite.table.json(header: header) : suite.table.markdown(header: header))
    }
}

/// The measurements of one `flashsale bench` run, appended to one table.
struct BenchSuite {
    let load: HTTPLoad
    let scratch: URL
    let http: HTTPClient
    let logger: Logger
    let quick: Bool
    let peers: [String: Double]
    /// No progress lines on standard error.
    let quiet: Bool
    var table = BenchTable()
    /// The ceilings, once measured.
    var nginx: Double?
    var health: Double?
    var buySales: Double?

    /// Progress on standard error, so the table on standard output stays clean.
    func progress(_ text: String) {
        if !quiet { FileHandle.standardError.write(Data("bench: \(text)\n".utf8)) }
    }

    // MARK: HTTP

    /// The HTTP rows of one server (the embedded file, or `label` = "PostgreSQL").
    mutating func httpRows(serverArguments: [String], label: String?) async throws {
        let prefix = label.map { "\($0): " } ?? ""
        progress("starting \(prefix.isEmpty ? "the embedded server" : prefix + "server")")
        let server = try await BenchFlashServer.start(label == nil ? "embedded" : "postgres", arguments: serverArguments, scratch: scratch, http: http)
        do {
            try await measureHTTP(server.base, prefix: prefix, full: label == nil)
        } catch {
            await server.process.stop()
            throw error
        }
        await server.process.stop()
    }

    private mutating func measureHTTP(_ base: String, prefix: String, full: Bool) async throws {
        // Prime: orders to look up, and the accept's real reply for nginx to answer with.
        let (reply, contentType, ids) = try await prime(base, count: 500)
        let p99Target = BenchRow.Target.atMost(10)
        if full {
            if let nginxPath = ChildProcess.find("nginx") {
                progress("nginx ceiling")
                let nginx = try await NginxCeiling.start(nginxPath, body: reply, contentType: contentType, scratch: scratch, http: http)
                let result: HTTPLoad.Result
                do { result = try await load.run(base: nginx.base, .post(path: "/orders/async", body: SuiteBenchCommand.orderBody)) } catch {
                    await nginx.process.stop()
                    throw error
                }
                await nginx.process.stop()
                self.nginx = result.rate
                table.add(BenchRow(figure: "ceiling: nginx, fixed 202 with the accept's reply", value: result.rate, unit: "req/s",
                                   note: check(result, expect: .success)))
            } else {
                table.notes.append("nginx is not installed: the rows held to nginx say n/a (apt-get install nginx, or run scripts/bench-peers)")
            }
            progress("GET /health")
            let health = try await load.run(base: base, .get(paths: ["/health"]))
            self.health = health.rate
            table.add(BenchRow(figure: "ceiling: GET /health, same server", value: health.rate, unit: "req/s", note: check(health, expect: .success)))
        }
        let nginxCeiling = nginx.map { (name: "nginx", value: $0) }
        let healthCeiling = health.map { (name: "GET /health", value: $0) }

        progress("\(prefix)POST /orders/async")
        let accept = try await load.run(base: base, .post(path: "/orders/async", body: SuiteBenchCommand.orderBody))
        let acceptNote = check(accept, expect: .success)
        if full {
            table.add(BenchRow(figure: "POST /orders/async (durable)", value: accept.rate, unit: "req/s", ceiling: nginxCeiling,
                               target: .ratioAtLeast(0.22), note: acceptNote))
            table.add(BenchRow(figure: "POST /orders/async vs /health", value: accept.rate, unit: "req/s", ceiling: healthCeiling, target: .ratioAtLeast(0.55)))
            table.add(BenchRow(figure: "POST /orders/async p99", value: accept.p99Millis, unit: "ms", target: p99Target))
        } else {
            table.add(BenchRow(figure: "\(prefix)POST /orders/async (durable)", value: accept.rate, unit: "req/s",
                               ceiling: peers["pgbench-insert"].map { (name: "pgbench INSERT", value: $0) }, target: .atLeast(8000), note: acceptNote))
            table.add(BenchRow(figure: "\(prefix)POST /orders/async p99", value: accept.p99Millis, unit: "ms"))
        }

        if full {
            progress("GET /orders/{id}")
            let lookups = try await load.run(base: base, .get(paths: ids.map { "/orders/\($0)" }))
            table.add(BenchRow(figure: "GET /orders/{id} (pending: with its queue position)", value: lookups.rate, unit: "req/s",
                               ceiling: healthCeiling, note: check(lookups, expect: .success)))
        }

        progress("\(prefix)POST /buy, sales")
        try await control(base, "POST", "/reset-stock/1000000000")
        let sales = try await load.run(base: base, .buy)
        let salesNote = check(sales, expect: .success)
        if full {
            buySales = sales.rate
            table.add(BenchRow(figure: "POST /buy, sales (durable)", value: sales.rate, unit: "req/s", ceiling: nginxCeiling,
                               target: .ratioAtLeast(0.22), note: salesNote))
            table.add(BenchRow(figure: "POST /buy, sales vs /health", value: sales.rate, unit: "req/s", ceiling: healthCeiling, target: .ratioAtLeast(0.55)))
            table.add(BenchRow(figure: "POST /buy, sales p99", value: sales.p99Millis, unit: "ms", target: p99Target))
            if let redis = peers["redis-eval"] {
                table.add(BenchRow(figure: "POST /buy, sales vs Redis EVAL decrement-if-positive", value: sales.rate, unit: "req/s",
                                   ceiling: (name: "Redis EVAL", value: redis),
                                   note: "Redis decides in memory and answers without a disk write; /buy stores the order and its message durably"))
            }
            progress("POST /buy, refusals")
            try await control(base, "PUT", "/products/iphone_16", body: #"{"stock": 0}"#)
            // Refusals are counted by the server (its /metrics), so that the load tool does no
            // per-response work (a wrk `response` hook halves its rate on these two cores).
            let before = try await countedRefusals(base)
            var refusals = try await load.run(base: base, .buy)
            refusals.status400 = try await countedRefusals(base) - before
            // The sold-out storm: refused at the edge (SoldOutMemory), not behind the writer.
            table.add(BenchRow(figure: "POST /buy, sold-out storm (refusals, 400)", value: refusals.rate, unit: "req/s", ceiling: healthCeiling,
                               target: .ratioAtLeast(0.8), note: check(refusals, expect: .refusal)))
        } else {
            table.add(BenchRow(figure: "\(prefix)POST /buy, sales (one hot product)", value: sales.rate, unit: "req/s",
                               target: .atLeast(5000), note: salesNote))
        }
    }

    enum Expectation { case success, refusal }

    /// A remark when some answers were not what the figure is about (it then measures less).
    func check(_ result: HTTPLoad.Result, expect: Expectation) -> String? {
        var problems: [String] = []
        switch expect {
        case .success where result.non2xx > 0: problems.append("\(result.non2xx) of \(result.requests) answers were not 2xx")
        case .refusal where (result.status400 ?? 0) < result.requests - result.errors:
            problems.append("\(result.requests - result.errors - (result.status400 ?? 0)) of \(result.requests) answers were not 400 refusals")
        default: break
        }
        if result.errors > 0 { problems.append("\(result.errors) connection errors or timeouts") }
        return problems.isEmpty ? nil : problems.joined(separator: "; ")
    }

    /// `POST /buy` answers with 400 so far, from the server's `flashsale_http_requests_total`.
    func countedRefusals(_ base: String) async throws -> Int {
        let response = try await http.execute(HTTPClientRequest(url: base + "/metrics"), timeout: .seconds(10))
        let text = String(buffer: try await response.body.collect(upTo: 8 << 20))
        return text.split(separator: "\n")
            .filter { $0.hasPrefix("flashsale_http_requests_total{") && $0.contains(#"route="/buy""#) && $0.contains(#"status="400""#) }
            .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
            .reduce(0) { $0 + Int($1) }
    }

    /// Places `count` orders (the lookups' ids) and returns the accept's reply and content type.
    func prime(_ base: String, count: Int) async throws -> (reply: String, contentType: String, ids: [String]) {
        var reply = "", contentType = "application/json", ids: [String] = []
        for _ in 0..<count {
            var request = HTTPClientRequest(url: base + "/orders/async")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: SuiteBenchCommand.orderBody))
            let response = try await http.execute(request, timeout: .seconds(10))
            let body = String(buffer: try await response.body.collect(upTo: 1 << 16))
            guard response.status == .accepted, case let .string(id)? = try JSONValue.parse(Array(body.utf8))["order_id"] else {
                throw BenchError("POST /orders/async answered \(response.status.code): \(body)")
            }
            reply = body
            contentType = response.headers.first(name: "Content-Type") ?? contentType
            ids.append(id)
        }
        return (reply, contentType, ids)
    }

    /// An admin call of the run, with the bench servers' admin secret.
    func control(_ base: String, _ method: String, _ path: String, body: String? = nil) async throws {
        var request = HTTPClientRequest(url: base + path)
        request.method = .init(rawValue: method)
        request.headers.add(name: "Authorization", value: "Bearer \(BenchFlashServer.adminToken)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await http.execute(request, timeout: .seconds(10))
        let text = String(buffer: try await response.body.collect(upTo: 1 << 16))
        guard (200..<300).contains(response.status.code) else { throw BenchError("\(method) \(path) answered \(response.status.code): \(text)") }
    }

    // MARK: Queue

    mutating func queueRows() async throws {
        let seconds = quick ? 2.0 : 5.0
        progress("embedded queue")
        let path = scratch.appendingPathComponent("queue.db").path
        let database = try SQLiteDatabase(path: path, synchronous: .full)
        let cycle: Double, sends: Double
        do {
            cycle = try await QueueBenchCommand.fullCycle(try await database.createQueue("bench-cycle"), seconds: seconds, cyclers: 16)
            sends = try await QueueBenchCommand.concurrentSends(try await database.createQueue("bench-send"), seconds: seconds, senders: 64)
        } catch {
            try? database.close()
            throw error
        }
        try database.close()
        table.add(BenchRow(figure: "embedded queue: full cycle (send 10, receive 10, delete; 16 loops)", value: cycle, unit: "msg/s", target: .atLeast(100_000)))
        table.add(BenchRow(figure: "embedded queue: single sends, 64 concurrent", value: sends, unit: "msg/s"))
    }

    // MARK: Workers

    /// A backlog drained by 64 workers whose gateway answers at once: the pool's own cost per order.
    mutating func drainRow() async throws {
        let orders = quick ? 20_032 : 60_032 // whole waves of 64
        progress("drain of \(orders) orders, instant gateway")
        let rate = try await WorkersBenchCommand.drainRate(workers: 64, latency: .zero, orders: orders, directory: scratch.path, logger: logger)
        table.add(BenchRow(figure: "drain: \(BenchTable.number(Double(orders))) queued orders, 64 workers, instant gateway", value: rate,
                           unit: "orders/s", target: .atLeast(20_000)))
    }

    /// The pool against W/L for several W and L.
    mutating func workerRows() async throws {
        let sizes: [(Int, Duration)] = quick
            ? [(1, .milliseconds(20)), (100, .milliseconds(50)), (1000, .milliseconds(300))]
            : [(1, .milliseconds(20)), (20, .milliseconds(20)), (200, .milliseconds(50)), (1000, .milliseconds(300))]
        for (workers, latency) in sizes {
            progress("worker pool W=\(workers), L=\(latency.shortDescription)")
            let result = try await WorkersBenchCommand.measure(workers: workers, latency: latency, seconds: quick ? 2 : 4,
                                                               directory: scratch.path, logger: logger)
            table.add(BenchRow(figure: "worker pool, W=\(workers), L=\(latency.shortDescription)", value: result.measured, unit: "orders/s",
                               ceiling: (name: "W/L", value: result.theory), target: .ratioAtLeast(0.98)))
        }
    }

    // MARK: PostgreSQL

    mutating func postgresRows(url: String) async throws {
        var configuration: PostgresDatabase.Configuration
        do { configuration = try PostgresDatabase.Configuration(url: url) } catch { throw ValidationError("--database: \(error)") }
        let schema = "flashsale_bench_\(UInt32.random(in: 0...UInt32.max))"
        configuration.schema = schema
        configuration.maxConnections = max(configuration.maxConnections, 64)
        let database = PostgresDatabase(configuration: configuration, logger: logger)
        try await database.withRunning {
            do {
                let seconds = quick ? 2.0 : 5.0
                progress("PostgreSQL queue")
                let cycle = try await QueueBenchCommand.fullCycle(try await database.createQueue("bench-cycle"), seconds: seconds, cyclers: 16)
                let sends = try await QueueBenchCommand.concurrentSends(try await database.createQueue("bench-send"), seconds: seconds, senders: 64)
                table.add(BenchRow(figure: "PostgreSQL queue: full cycle (16 loops)", value: cycle, unit: "msg/s",
                                   ceiling: peers["pgbench-dequeue"].map { (name: "pgbench SKIP LOCKED dequeue", value: $0) }, target: .atLeast(15_000)))
                table.add(BenchRow(figure: "PostgreSQL queue: single sends, 64 concurrent", value: sends, unit: "msg/s",
                                   ceiling: peers["pgbench-insert"].map { (name: "pgbench INSERT", value: $0) }))
                guard var components = URLComponents(string: url) else { throw ValidationError("--database: not a URL") }
                components.queryItems = (components.queryItems ?? []).filter { !["schema", "search_path"].contains($0.name) }
                    + [URLQueryItem(name: "schema", value: schema)]
                try await httpRows(serverArguments: ["--database", components.string ?? url], label: "PostgreSQL")
            } catch {
                try? await database.dropSchema()
                throw error
            }
            try await database.dropSchema()
        }
    }
}
