import FlashCore
import FlashFaults
import Foundation
import NIOHTTP1
import Synchronization

/// One order a chaos client tried to place, and every answer it got (a careful client: the same
/// key again after a 5xx or a dropped connection).
struct ChaosIntent: Sendable {
    enum Operation: String, Sendable { case async, buy, sync }
    var operation: Operation
    /// The client's key: the order id for `async` and `sync`, the `Idempotency-Key` for `buy`.
    var key: String
    /// The order id, once an answer named it (`async` and `sync`: the key).
    var orderID: String?
    /// Some answer was 2xx: the order exists.
    var acknowledged = false
    /// A sync order's 504 said "nothing was charged": the order, if it exists, is failed and
    /// charged nothing (504 "cannot tell yet" counts as unresolved).
    var toldNotCharged = false
    /// Some answer was 4xx: refused (sold out), nothing stored.
    var refused = false
    /// Some answer said 503 `unavailable` or `overloaded`: not acknowledged, nothing stored.
    var notAcknowledged = false
    /// Some answer left the outcome open (a dropped connection, a timeout, 503 `unconfirmed`).
    var unresolved = false
}

/// The history of a run, one JSON object per line: every attempt and every fault, with its time
/// since the start, so that a failing run can be read and replayed.
final class ChaosHistory: Sendable {
    /// One line of the history.
    struct Event: Encodable, Sendable {
        var t_ms: Int64 = 0
        var event: String
        var operation: String?
        var key: String?
        var attempt: Int?
        var api: String?
        var status: Int?
        var code: String?
        var error: String?
        var order_id: String?
        var fault: String?
        var process: String?
    }

    private let handle: Mutex<FileHandle?>
    private let start = ContinuousClock.now

    init(path: String) throws {
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        handle = Mutex(try FileHandle(forWritingTo: URL(fileURLWithPath: path)))
    }

    func record(_ event: Event) {
        var event = event
        event.t_ms = (ContinuousClock.now - start).asMilliseconds
        guard var line = try? JSONEncoder().encode(event) else { return }
        line.append(0x0A)
        handle.withLock { try? $0?.write(contentsOf: line) }
    }

    func close() {
        handle.withLock { handle in
            try? handle?.close()
            handle = nil
        }
    }
}

/// Drives a deployment with careful clients while faults hit it, then checks the outcome from
/// outside: HTTP answers, the orders the API shows and the gateway's ledger.
struct ChaosRun {
    let deployment: ChaosDeployment
    let http: ChaosHTTP
    let history: ChaosHistory
    let clients: Int
    let faults: Int
    let interval: Duration
    let runID: String
    /// The clients hold off while more orders than this are open (pending or processing), as the
    /// API's `/stats` says; nil: no bound.
    let maxOpen: Int?

    static let product = "CHAOS-STOCK"
    static let productStock = 1_000_000
    static let flashStock = 40
    /// The product `/buy` sells.
    static let flashProduct = "CHAOS-FLASH"

    /// Stocks the two products: one that does not run out (async and sync orders), and the
    /// flash product that `/buy` sells out.
    func stock() async throws {
        let flashProduct = Self.flashProduct
        let api = deployment.apis[0].baseURL
        for (product, stock) in [(Self.product, Self.productStock), (flashProduct, Self.flashStock)] {
            let answer = await http.call(.PUT, api + "/products/\(product)", json: #"{"stock":\#(stock),"price":10}"#,
                                         headers: [("Authorization", "Bearer \(ChaosDeployment.adminToken)")])
            guard answer.status == 200 else { throw ChaosError("stocking \(product) failed: \(answer)") }
        }
    }

    /// Runs the load and the faults; the intents, and the faults by kind.
    func drive() async throws -> (intents: [ChaosIntent], faults: [String: Int]) {
        let stop = StopFlag()
        let open = OpenOrders()
        return try await withThrowingTaskGroup(of: [ChaosIntent].self) { group in
            if let maxOpen {
                group.addTask {
                    await self.countOpen(into: open, until: stop)
                    return []
                }
                for client in 0..<clients {
                    group.addTask { await self.client(client, until: stop, holdingOffAbove: maxOpen, open: open) }
                }
            } else {
                for client in 0..<clients {
                    group.addTask { await self.client(client, until: stop) }
                }
            }
            let injected: [String: Int]
            do {
                injected = try await injectFaults()
            } catch {
                stop.raise()
                group.cancelAll()
                throw error
            }
            stop.raise()
            var intents: [ChaosIntent] = []
            for try await batch in group { intents += batch }
            return (intents, injected)
        }
    }

    /// The orders open at the last look.
    final class OpenOrders: Sendable {
        let count = Atomic<Int>(0)
    }

    /// Raised when the clients must stop.
    final class StopFlag: Sendable {
        private let raised = Atomic<Bool>(false)
        func raise() { raised.store(true, ordering: .releasing) }
        var isRaised: Bool { raised.load(ordering: .acquiring) }
    }

    /// Reads the open orders from the first API's `/stats` twice a second (a failed read keeps
    /// the last figure).
    private func countOpen(into open: OpenOrders, until stop: StopFlag) async {
        let api = deployment.apis[0].baseURL
        while !stop.isRaised {
            let stats = await http.call(.GET, api + "/stats", timeout: .seconds(2))
            if let pending = stats.int("orders", "pending"), let processing = stats.int("orders", "processing") {
                open.count.store(pending + processing, ordering: .relaxed)
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }

    private func client(_ number: Int, until stop: StopFlag, holdingOffAbove maxOpen: Int = .max,
                        open: OpenOrders = OpenOrders()) async -> [ChaosIntent] {
        var generator = SplitMix64(seed: UInt64(number) &* 0x9E37_79B9_7F4A_7C15 &+ 1)
        var intents: [ChaosIntent] = []
        var n = 0
        while !stop.isRaised {
            if open.count.load(ordering: .relaxed) > maxOpen {
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            n += 1
            let roll = Double.random(in: 0..<1, using: &generator)
            let operation: ChaosIntent.Operation = roll < 0.55 ? .async : (roll < 0.8 ? .buy : .sync)
            // Ids that need escaping in a path, as clients send them.
            let key = n % 7 == 0 ? "\(runID) c\(number)/\(n) é" : "\(runID)-c\(number)-\(n)"
            intents.append(await place(operation, key: key, client: number, generator: &generator))
        }
        return intents
    }

    private func place(_ operation: ChaosIntent.Operation, key: String, client: Int, generator: inout SplitMix64) async -> ChaosIntent {
        var intent = ChaosIntent(operation: operation, key: key)
        if operation != .buy { intent.orderID = key }
        let apis = deployment.apis
        for attempt in 0..<6 {
            let api = apis[Int.random(in: 0..<apis.count, using: &generator)].baseURL
            let answer: ChaosHTTP.Answer
            switch operation {
            case .async, .sync:
                let object: [String: Any] = ["customer_id": "c\(client)", "order_id": key, "items": [["product_id": Self.product, "quantity": 1]]]
                let body = String(decoding: (try? JSONSerialization.data(withJSONObject: object)) ?? Data(), as: UTF8.self)
                answer = await http.call(.POST, api + (operation == .async ? "/orders/async" : "/orders/sync"), json: body,
                                         timeout: .seconds(operation == .sync ? 15 : 10))
            case .buy:
                answer = await http.call(.POST, api + "/buy", json: #"{"userId":"c\#(client)"}"#, headers: [("Idempotency-Key", key)])
            }
            history.record(.init(event: "attempt", operation: operation.rawValue, key: key, attempt: attempt, api: api, status: answer.status,
                                 code: answer.code, error: answer.error, order_id: answer.string("order_id")))
            switch answer.status {
            case let status? where (200..<300).contains(status):
                intent.acknowledged = true
                if let id = answer.string("order_id") { intent.orderID = id }
                return intent
            case 504? where answer.json?.at(["error", "message"])?.string?.contains("nothing was charged") == true:
                intent.toldNotCharged = true
                return intent
            case let status? where (400..<500).contains(status):
                intent.refused = true
                return intent
            case 503? where answer.code == "unavailable" || answer.code == "overloaded":
                intent.notAcknowledged = true
            default:
                intent.unresolved = true
            }
            try? await Task.sleep(for: .milliseconds(100 * (attempt + 1)))
        }
        return intent
    }

    /// Faults at random moments, `interval` apart on average: kill -9 of any process kind
    /// (restarted at once, on its port), SIGSTOP of a worker for longer than its lease and of the
    /// gateway for a few seconds, the network to the gateway, PostgreSQL and AWS cut, stalled or
    /// slowed (every process on both ends running on), and PostgreSQL restarted or stopped.
    private func injectFaults() async throws -> [String: Int] {
        var generator = SplitMix64(seed: 0xC4A0_5EED)
        var counts: [String: Int] = [:]
        for _ in 0..<faults {
            let pause = interval.asSeconds * Double.random(in: 0.5..<1.5, using: &generator)
            try await Task.sleep(for: .milliseconds(Int64(pause * 1000)))
            deployment.resumeDue()
            let workers = deployment.members.filter { $0.kind == .worker && $0.pausedUntil == nil }
            let apis = deployment.apis.filter { $0.pausedUntil == nil }
            var kinds = ["kill -9 api", "kill -9 gateway", "SIGSTOP gateway"]
            if !workers.isEmpty { kinds += ["kill -9 worker", "SIGSTOP worker"] }
            if deployment.topology == .embedded { kinds += ["SIGSTOP api"] }
            if deployment.postgresDirectory != nil, deployment.postgresPaused == nil {
                kinds += ["SIGSTOP PostgreSQL"]
                // Not while its link is broken: a connection opened through a stalled link never
                // sends its startup packet, and PostgreSQL's shutdown waits for such a child for
                // authentication_timeout (60 s), which is PostgreSQL's behaviour, not flashsale's.
                if deployment.links["PostgreSQL"]?.brokenUntil == nil { kinds += ["restart PostgreSQL"] }
            }
            for (name, link) in deployment.links.sorted(by: { $0.key < $1.key }) where link.brokenUntil == nil {
                kinds += ["cut \(name) link", "stall \(name) link", "slow \(name) link"]
            }
            let kind = kinds[Int.random(in: 0..<kinds.count, using: &generator)]
            let member: ChaosDeployment.Member?
            switch kind {
            case "kill -9 api":
                let api = apis.isEmpty ? deployment.apis[0] : apis[Int.random(in: 0..<apis.count, using: &generator)]
                try deployment.killAndRestart(api)
                member = api
            case "kill -9 worker":
                let worker = workers[Int.random(in: 0..<workers.count, using: &generator)]
                try deployment.killAndRestart(worker)
                member = worker
            case "kill -9 gateway":
                member = deployment.gateway
                try deployment.killAndRestart(deployment.gateway)
            case "SIGSTOP worker":
                let worker = workers[Int.random(in: 0..<workers.count, using: &generator)]
                deployment.pause(worker, for: ChaosDeployment.lease + .seconds(1))
                member = worker
            case "SIGSTOP api":
                member = deployment.apis[0]
                // The whole embedded process, workers and all, past its deliveries' lease.
                deployment.pause(deployment.apis[0], for: ChaosDeployment.lease + .seconds(1))
            case "restart PostgreSQL":
                try await deployment.restartPostgres()
                member = nil
            case let link where link.hasSuffix(" link"):
                let parts = link.split(separator: " ")
                let name = String(parts[1])
                let mode: TCPProxy.Mode = switch parts[0] {
                case "cut": .refusing
                case "stall": .stalled
                default: .delayed(.milliseconds(200))
                }
                // The gateway for as long as its SIGSTOP; the others past a lease, as PostgreSQL's SIGSTOP.
                deployment.breakLink(deployment.links[name]!, mode, for: name == "gateway" ? .seconds(3) : ChaosDeployment.lease + .seconds(1))
                member = name == "gateway" ? deployment.gateway : nil
            case "SIGSTOP PostgreSQL":
                // Longer than a lease: workers' heartbeats and the API's calls all wait on it.
                try deployment.pausePostgres(for: ChaosDeployment.lease + .seconds(1))
                member = nil
            default:
                member = deployment.gateway
                deployment.pause(deployment.gateway, for: .seconds(3))
            }
            counts[kind, default: 0] += 1
            history.record(.init(event: "fault", fault: kind, process: member?.name ?? "postgres"))
        }
        // The last pauses run out before the load stops.
        try await Task.sleep(for: ChaosDeployment.lease + .seconds(1))
        deployment.resumeDue(all: true)
        return counts
    }
}
