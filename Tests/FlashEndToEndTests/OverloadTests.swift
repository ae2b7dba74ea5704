import AsyncHTTPClient
import FlashCore
import FlashFaults
import Foundation
import NIOCore
import Synchronization
import Testing

/// A stalled backend while orders keep arriving (issue 25): another process holds the SQLite
/// file's write lock for 10 s, or PostgreSQL's connections stall for 10 s, while an open-loop
/// client sends orders with ids of its own at a steady rate. Every client has its answer within
/// the admission deadline and a margin; the refused are 503 `overloaded` with `Retry-After`
/// and none of them exists afterwards; after the stall orders are accepted again at once; and
/// every acknowledged order is there.
@Suite("Admission control under a stalled backend")
struct OverloadTests {
    /// One order of the open-loop client: when it was sent (since the start), what came back, how long it took.
    struct Sent: Sendable {
        var id: String
        var sentAt: Duration
        var status: Int
        var code: String?
        var retryAfter: String?
        var took: Duration
    }

    /// Sends `rate` orders per second for `length`, each on its own schedule (a slow answer
    /// delays no other order); `during` runs beside it, given the start instant.
    static func openLoop(_ client: APIClient, prefix: String, rate: Int, for length: Duration,
                         during: @escaping @Sendable (ContinuousClock.Instant) async throws -> Void) async throws -> [Sent] {
        let start = ContinuousClock.now
        let count = Int(length.asSeconds * Double(rate))
        return try await withThrowingTaskGroup(of: Sent?.self) { group in
            group.addTask {
                try await during(start)
                return nil
            }
            for index in 0..<count {
                let sendAt = start + .milliseconds(index * 1000 / rate)
                group.addTask {
                    try await Task.sleep(until: sendAt, clock: .continuous)
                    let id = "\(prefix)-\(index)"
                    let body = #"{"customer_id":"c\#(index % 50)","order_id":"\#(id)","items":[{"product_id":"P","quantity":1,"price":1}]}"#
                    let sent = ContinuousClock.now
                    let reply = try await client.call(.POST, "/orders/async", json: body, timeout: .seconds(60))
                    return Sent(id: id, sentAt: sent - start, status: reply.status, code: reply.string("error", "code"),
                                retryAfter: reply.headers.first(name: "Retry-After"), took: .now - sent)
                }
            }
            var all: [Sent] = []
            for try await sent in group { if let sent { all.append(sent) } }
            return all.sorted { $0.sentAt < $1.sentAt }
        }
    }

    static func httpClient() -> HTTPClient {
        HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(
            connectionPool: .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 400)))
    }

    /// The checks both stalls share. `refusals` are the error codes of answers that stored
    /// nothing; `unconfirmed` may have stored the order (a commit that may have been sent).
    static func check(_ sent: [Sent], client: APIClient, stallStart: Duration, stallEnd: Duration, answerWithin limit: Duration,
                      refusals: Set<String>, unconfirmed: Set<String> = []) async throws {
        let slowest = sent.max { $0.took < $1.took }
        #expect(slowest.map { $0.took <= limit } ?? false, "slowest answer: \(String(describing: slowest)), limit \(limit)")
        let refused = sent.filter { $0.status == 503 && refusals.contains($0.code ?? "") }
        #expect(!refused.isEmpty, "a 10 s stall at this rate must refuse some orders")
        for reply in sent where reply.status != 202 {
            #expect(reply.status == 503, "\(reply)")
            #expect(refusals.contains(reply.code ?? "") || unconfirmed.contains(reply.code ?? ""), "\(reply)")
            #expect(reply.retryAfter != nil, "\(reply)")
        }
        // Accepted again once the stall is over (a second for the backend to recover).
        let late = sent.filter { $0.sentAt >= stallEnd + .seconds(1) }
        #expect(!late.isEmpty && late.allSatisfy { $0.status == 202 }, "after the stall: \(late.filter { $0.status != 202 })")
        // Acknowledged: stored. Refused: never stored.
        for reply in sent where reply.status == 202 || refusals.contains(reply.code ?? "") {
            let found = try await client.call(.GET, "/orders/\(reply.id)").status
            #expect(found == (reply.status == 202 ? 200 : 404), "\(reply) is \(found) afterwards")
        }
        let during = sent.filter { $0.sentAt >= stallStart && $0.sentAt < stallEnd }
        print("stall: \(sent.count) sent, \(sent.filter { $0.status == 202 }.count) accepted, \(refused.count) refused "
              + "(\(during.filter { $0.status == 202 }.count) of \(during.count) accepted during the stall); slowest \(slowest?.took ?? .zero)")
    }

    @Test func anSQLiteFileLockedByAnotherProcessFor10sRefusesInTimeStoresNothingRefusedAndRecovers() async throws {
        let data = ServerProcess.temporaryDataPath()
        let server = try await ServerProcess(dataPath: data, arguments: ["--workers", "0", "--admission-deadline", "2s"])
        let http = Self.httpClient()
        do {
            let client = APIClient(http: http, base: server.baseURL)
            let stall = Mutex<(start: Duration, end: Duration)?>(nil)
            // What /stats said during the stall, and the server's memory before and at its peak.
            let seen = Mutex<(stalled: Bool, limit: Int?, memoryBefore: Int, memoryPeak: Int)>((false, nil, 0, 0))
            let sent = try await Self.openLoop(client, prefix: "lock", rate: 30, for: .seconds(16)) { start in
                try await Task.sleep(until: start + .seconds(3), clock: .continuous)
                let before = server.residentBytes ?? 0
                seen.withLock { $0.memoryBefore = before; $0.memoryPeak = before }
                let lock = try await SQLiteLockHolder(path: data)
                let locked = ContinuousClock.now - start
                let end = ContinuousClock.now + .seconds(10)
                while ContinuousClock.now < end {
                    let memory = server.residentBytes ?? 0
                    seen.withLock { $0.memoryPeak = max($0.memoryPeak, memory) }
                    if !seen.withLock({ $0.stalled }), let stats = try? await client.stats(),
                       case .bool(true)? = stats.json?.at(["admission", "stalled"]) {
                        seen.withLock { $0.stalled = true; $0.limit = stats.int("admission", "limit") }
                    }
                    try await Task.sleep(for: .milliseconds(250))
                }
                lock.release()
                stall.withLock { $0 = (locked, ContinuousClock.now - start) }
            }
            let (start, end) = try #require(stall.withLock { $0 })
            try await Self.check(sent, client: client, stallStart: start, stallEnd: end, answerWithin: .seconds(5), refusals: ["overloaded"])
            let stats = try await client.stats()
            let atDeadline = try #require(stats.int("admission", "shed", "deadline"))
            let onArrival = try #require(stats.int("admission", "shed", "forecast"))
            #expect(atDeadline + onArrival == sent.filter { $0.code == "overloaded" }.count)
            // Once the writer had committed nothing for a deadline (2 s of a 10 s stall), orders
            // were refused on arrival instead of waiting their deadline out.
            #expect(onArrival > atDeadline, "refused on arrival \(onArrival), at the deadline \(atDeadline)")
            let during = seen.withLock { $0 }
            #expect(during.stalled && during.limit == 0, "/stats never said the store was stalled, with a limit of 0: \(during)")
            // Memory stays flat: the line holds at most a deadline's orders, and the refused none.
            #expect(during.memoryPeak - during.memoryBefore < 64 << 20, "RSS grew from \(during.memoryBefore) to \(during.memoryPeak) during the stall")
            #expect(try await server.terminate() == 0)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    @Test(.enabled(if: TestPostgresServer.url != nil))
    func aPostgreSQLStalledFor10sRefusesInTimeStoresNothingRefusedAndRecovers() async throws {
        let (proxy, serving) = try await StartupWaitTests.proxy()
        defer { serving.cancel() }
        let schema = "overload_\(UUID().uuidString.prefix(8).lowercased())"
        let server = try await ServerProcess(dataPath: ServerProcess.temporaryDataPath(), arguments: [
            "--workers", "0", "--admission-deadline", "2s", "--database", try StartupWaitTests.url(port: proxy.port, schema: schema),
        ])
        let http = Self.httpClient()
        do {
            let client = APIClient(http: http, base: server.baseURL)
            let stall = Mutex<(start: Duration, end: Duration)?>(nil)
            let sent = try await Self.openLoop(client, prefix: "pg", rate: 30, for: .seconds(16)) { start in
                try await Task.sleep(until: start + .seconds(3), clock: .continuous)
                proxy.mode = .stalled
                let stalled = ContinuousClock.now - start
                try await Task.sleep(for: .seconds(10))
                proxy.mode = .passing
                stall.withLock { $0 = (stalled, ContinuousClock.now - start) }
            }
            let (start, end) = try #require(stall.withLock { $0 })
            // A group whose statements were sent when the stall began is answered when its own
            // limit passes (3 s, `unconfirmed`: its commit may have been sent); no answer is later.
            try await Self.check(sent, client: client, stallStart: start, stallEnd: end, answerWithin: .seconds(6.5),
                                 refusals: ["overloaded", "unavailable"], unconfirmed: ["unconfirmed"])
            #expect(try await server.terminate() == 0)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}
