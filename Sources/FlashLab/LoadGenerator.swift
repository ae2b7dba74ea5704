import AsyncHTTPClient
import FlashCore
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// The load generator: Locust-style closed-loop users, or an open-loop constant arrival rate
/// whose latencies are measured from each request's intended send time (as wrk2 does), so a
/// stalled server cannot hide its stall by slowing the sender (no coordinated omission).
public struct LoadGenerator: Sendable {
    public let configuration: LoadConfiguration

    public init(configuration: LoadConfiguration) {
        self.configuration = configuration
    }

    /// Runs the load; `onSample` is called once a second with that second's figures.
    public func run(onSample: @escaping @Sendable (LoadSample) -> Void = { _ in }) async throws -> LoadResult {
        let config = configuration
        let connections = config.rate == nil ? max(1, config.users) : max(1, min(config.maxInFlight, 2000))
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(
            timeout: .init(connect: .seconds(5)),
            connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: connections)))
        let tally = LoadTally()
        let clock = ContinuousClock()
        let start = clock.now
        let startUnix = Date().timeIntervalSince1970
        let deadline = start + .milliseconds(Int64(config.duration * 1000))
        let history = SampleLog()
        let templates = TemplateContext(products: config.products)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // Once a second: a history row and the progress callback; at least one row,
                    // even when this task first runs after the deadline on a busy machine.
                    var second = 1
                    var total = EndpointStatistics(method: "", name: "Aggregated")
                    var ended = false
                    repeat {
                        // Whole seconds, and a last, shorter one ending at the deadline, or when
                        // the load ended sooner (its request limit reached: this task is cancelled).
                        var tick = min(start + .seconds(second), deadline)
                        do {
                            try await Task.sleep(until: tick, clock: .continuous)
                        } catch {
                            tick = min(clock.now, tick)
                            ended = true
                        }
                        let span = max(1e-3, (tick - (start + .seconds(second - 1))).asSeconds)
                        let (window, users) = tally.takeWindow()
                        total.merge(window)
                        let sample = LoadSample(
                            unixTime: startUnix + (tick - start).asSeconds, elapsed: (tick - start).asSeconds, users: users,
                            requestsPerSecond: Double(window.requests) / span, failuresPerSecond: Double(window.failures) / span,
                            window: window, total: total)
                        history.append(sample)
                        onSample(sample)
                        second += 1
                    } while !ended && clock.now < deadline
                }
                if config.rate != nil || config.stages?.kind == .rate {
                    try await Self.openLoop(config: config, http: http, tally: tally, templates: templates, clock: clock, start: start, deadline: deadline)
                } else {
                    do {
                        try await Self.closedLoop(config: config, http: http, tally: tally, templates: templates, clock: clock, start: start, deadline: deadline)
                    } catch is DeadlineReached {}
                }
                // A run with a request limit ends with its load (the sampler writes the last,
                // shorter second now); one without lasts its whole duration, as before.
                if config.requestLimit != nil { group.cancelAll() }
                try await group.waitForAll()
            }
        } catch {
            try? await http.shutdown()
            throw error
        }
        let elapsed = (clock.now - start).asSeconds
        try await http.shutdown()
        return LoadResult(
            configuration: config, elapsed: elapsed, endpoints: tally.endpoints, aggregated: tally.aggregated,
            statusCodes: tally.statusCodes, errors: tally.errors, history: history.samples)
    }

    // MARK: Closed loop

    /// Users send, think, send again until the deadline; as with Locust's `--run-time`, requests
    /// still in flight then are cancelled and not counted. With a request limit, users take one
    /// of its requests before each send, and the run ends the moment the last of them is
    /// answered (users still thinking, and the spawner, are stopped then), or at the deadline if
    /// that comes first.
    static func closedLoop(config: LoadConfiguration, http: HTTPClient, tally: LoadTally, templates: TemplateContext, clock: ContinuousClock,
                           start: ContinuousClock.Instant, deadline: ContinuousClock.Instant) async throws {
        let tickets = config.requestLimit.map { RequestTickets($0) }
        // In stages, every user is started at once and user k sends only while the target is
        // at least k; the users column follows the target.
        let stages = config.stages
        let users = stages.map { Int($0.peak.rounded(.up)) } ?? config.users
        @Sendable func active(_ user: Int) -> Bool {
            guard let stages else { return true }
            return Double(user) < stages.target(at: (clock.now - start).asSeconds)
        }
        do {
            try await withThrowingTaskGroup(of: Void.self) { race in
                race.addTask {
                    try await Task.sleep(until: deadline, clock: .continuous)
                    throw DeadlineReached()
                }
                if let stages {
                    race.addTask {
                        while true {
                            tally.setUsers(Int(stages.target(at: (clock.now - start).asSeconds).rounded(.down)))
                            try await Task.sleep(for: .milliseconds(100))
                        }
                    }
                }
                race.addTask {
                    try await withThrowingDiscardingTaskGroup { group in
                        for user in 0..<users {
                            let spawnAt = stages != nil ? start : start + .milliseconds(Int64(Double(user) / max(config.spawnRate, 0.001) * 1000))
                            if spawnAt >= deadline || tickets?.remaining == 0 { break }
                            // Cancelled (the last answer came, or the run was): spawn no more; the
                            // group then ends with its users' outcome.
                            do { try await Task.sleep(until: spawnAt, clock: .continuous) } catch { break }
                            if stages == nil { tally.setUsers(user + 1) }
                            group.addTask {
                                var bodies = OrderBodies(seed: config.seed == 0 ? UInt64.random(in: 1...UInt64.max) : config.seed &+ UInt64(user))
                                while clock.now < deadline {
                                    guard active(user) else {
                                        try await Task.sleep(for: .milliseconds(50))
                                        continue
                                    }
                                    guard tickets?.take() ?? true else { break }
                                    let sent = clock.now
                                    await send(config: config, http: http, tally: tally, body: body(config, &bodies, templates),
                                               templates: templates, intended: sent, clock: clock)
                                    // The limit's last answer ends the run at once (it cancels the others).
                                    if tickets?.answered() == true { throw LimitReached() }
                                    let think = Double.random(in: config.wait)
                                    let next = clock.now + .milliseconds(Int64(think * 1000))
                                    if next >= deadline { break }
                                    try await Task.sleep(until: next, clock: .continuous)
                                }
                            }
                        }
                    }
                }
                // The first to end decides: the deadline throws (cancelling the users, and with
                // them their requests in flight); the limit's last answer throws `LimitReached`;
                // users who all stopped early (their next send past the deadline) still wait
                // for the deadline. A cancelled run throws `CancellationError`.
                _ = try await race.next()
                _ = try await race.next()
                race.cancelAll()
            }
        } catch is LimitReached {}
    }

    /// Ends a closed loop with a request limit when its last request is answered.
    struct LimitReached: Error {}

    /// Ends the closed loop's task group at the deadline (cancelling requests in flight).
    struct DeadlineReached: Error {}

    // MARK: Open loop

    /// Requests at intended times: a constant `rate`, or the ramps of its stages (starting
    /// from `rate`, else 0).
    static func openLoop(config: LoadConfiguration, http: HTTPClient, tally: LoadTally, templates: TemplateContext, clock: ContinuousClock,
                         start: ContinuousClock.Instant, deadline: ContinuousClock.Instant) async throws {
        let slots = AsyncSemaphore(permits: max(1, config.maxInFlight))
        let interval = 1.0 / max(config.rate ?? 0, 1e-6)
        var schedule = config.stages.map { $0.sendTimes(from: config.rate ?? 0) }
        tally.setUsers(0)
        try await withThrowingDiscardingTaskGroup { group in
            var index = 0
            var bodies = OrderBodies(seed: config.seed == 0 ? UInt64.random(in: 1...UInt64.max) : config.seed)
            while true {
                if let limit = config.requestLimit, index >= limit { break }
                let offset: Double
                if schedule != nil {
                    guard let next = schedule?.next() else { break }
                    offset = next
                } else {
                    offset = Double(index) * interval
                }
                let intended = start + .nanoseconds(Int64(offset * 1e9))
                if intended >= deadline { break }
                if intended > clock.now { try await Task.sleep(until: intended, clock: .continuous) }
                _ = await slots.acquire()
                let body = body(config, &bodies, templates)
                group.addTask {
                    defer { slots.release() }
                    await send(config: config, http: http, tally: tally, body: body, templates: templates, intended: intended, clock: clock)
                }
                index += 1
            }
        }
    }

    // MARK: One request

    /// The next request's body: the fixed one, the template's, or a generated order.
    static func body(_ config: LoadConfiguration, _ bodies: inout OrderBodies, _ templates: TemplateContext) -> String? {
        if let body = config.body { return body }
        if let template = config.bodyTemplate { return template.render(templates) }
        return bodies.next(for: config.endpoint)
    }

    static func send(config: LoadConfiguration, http: HTTPClient, tally: LoadTally, body: String?, templates: TemplateContext,
                     intended: ContinuousClock.Instant, clock: ContinuousClock) async {
        let endpoint = config.endpoint
        var request = HTTPClientRequest(url: config.host + endpoint.path)
        request.method = HTTPMethod(rawValue: endpoint.method)
        if let body, endpoint.method != "GET" {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        for header in config.headers {
            request.headers.replaceOrAdd(name: header.name, value: header.value.render(templates))
        }
        var status: Int?
        var failure: String?
        var bytes = 0
        do {
            let response = try await http.execute(request, timeout: .milliseconds(Int64(config.timeout * 1000)))
            let collected = try await response.body.collect(upTo: 16 << 20)
            bytes = collected.readableBytes
            status = Int(response.status.code)
            if response.status.code >= 400 {
                failure = "HTTP \(response.status.code)" + (Self.errorCode(collected).map { " \($0)" } ?? "")
            }
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            failure = "timeout after \(Format.seconds(config.timeout))"
        } catch {
            failure = "\(error)"
        }
        // A request cancelled at the end of a closed-loop run is not counted (Locust does the same).
        if Task.isCancelled { return }
        let micros = UInt64(max(0, (clock.now - intended).asSeconds * 1e6))
        tally.record(method: endpoint.method, name: endpoint.path, micros: micros, status: status, error: failure, bytes: bytes)
    }

    static func errorCode(_ body: ByteBuffer) -> String? {
        guard let value = try? JSONValue.parse(body.readableBytesView), case let .string(code)? = value["error"]?["code"] else { return nil }
        return "(\(code))"
    }
}

/// Bodies as the seeds' clients send them: an order of 1–3 random items, or a buyer's id.
struct OrderBodies {
    var generator: SplitMix64

    init(seed: UInt64) {
        generator = SplitMix64(seed: seed)
    }

    mutating func next(for endpoint: LoadConfiguration.Endpoint) -> String? {
        switch endpoint {
        case .buy:
            return #"{"userId": \#(Int.random(in: 1...1_000_000_000, using: &generator))}"#
        case let .path(_, method) where method == "GET":
            return nil
        default:
            let count = Int.random(in: 1...3, using: &generator)
            let items = (0..<count).map { _ in
                let product = Int.random(in: 1...100, using: &generator)
                let quantity = Int.random(in: 1...3, using: &generator)
                let price = Double(Int.random(in: 999...19999, using: &generator)) / 100
                return #"{"product_id": "PROD-\#(String(format: "%03d", product))", "quantity": \#(quantity), "price": \#(price)}"#
            }
            return #"{"customer_id": \#(Int.random(in: 1...100_000, using: &generator)), "items": [\#(items.joined(separator: ", "))]}"#
        }
    }
}

/// The requests of a run with a request limit: taken one at a time by its users before each
/// send, and counted when answered.
final class RequestTickets: Sendable {
    private struct Counts {
        var left: Int
        var unanswered: Int
    }

    private let counts: Mutex<Counts>

    init(_ limit: Int) {
        counts = Mutex(Counts(left: max(0, limit), unanswered: max(0, limit)))
    }

    /// Takes one; false when none is left.
    func take() -> Bool {
        counts.withLock { counts in
            guard counts.left > 0 else { return false }
            counts.left -= 1
            return true
        }
    }

    /// Counts a taken request's answer (or failure); true when it was the limit's last.
    func answered() -> Bool {
        counts.withLock { counts in
            counts.unanswered -= 1
            return counts.unanswered == 0
        }
    }

    /// Requests not yet taken.
    var remaining: Int { counts.withLock { $0.left } }
}

/// The per-second samples of a run, appended by the sampling task.
final class SampleLog: Sendable {
    private let list = Mutex<[LoadSample]>([])
    func append(_ sample: LoadSample) { list.withLock { $0.append(sample) } }
    var samples: [LoadSample] { list.withLock { $0 } }
}
