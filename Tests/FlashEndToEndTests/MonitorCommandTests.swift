import AsyncHTTPClient
import FlashCore
import Foundation
import Testing

/// `flashsale monitor` as an operator runs it during a sale: an address where nothing answers
/// fails at once, naming it; a server that goes away mid-run is marked sample by sample while
/// the monitor keeps going (it used to exit on the first failed sample).
@Suite("flashsale monitor", .serialized)
struct MonitorCommandTests {
    @Test func anAddressWhereNothingListensFailsNamingIt() async throws {
        let port = try await ChildPort.free()
        let run = try await ServerProcess.runCommand(["monitor", "--url", "http://127.0.0.1:\(port)", "--duration", "30s"], within: .seconds(60))
        #expect(run.status != 0)
        #expect(run.errors.contains("http://127.0.0.1:\(port)/stats"), "\(run.errors)")
    }

    @Test func partsTheServerCannotReadAreNamedOnEachLine() async throws {
        // Its payment gateway is away: /stats answers with the rest, marking the payments part.
        let gatewayPort = try await ChildPort.free()
        let server = try await ServerProcess(dataPath: ServerProcess.temporaryDataPath(),
                                             arguments: ["--workers", "0", "--payment-url", "http://127.0.0.1:\(gatewayPort)"])
        let run = try await ServerProcess.runCommand(["monitor", "--url", server.baseURL, "--interval", "200ms", "--duration", "1s"], within: .seconds(60))
        #expect(run.status == 0, "\(run.errors)")
        let samples = run.output.split(separator: "\n").dropFirst()
        #expect(!samples.isEmpty)
        #expect(samples.allSatisfy { $0.hasSuffix("(unavailable, figures stale: payments)") }, "\(run.output)")
        _ = try await server.terminate()
    }

    @Test func inFlightDeliveriesOfADeadWorkerAreNamedWithWhenTheirLeasesEnd() async throws {
        let data = ServerProcess.temporaryDataPath()
        let api = try await ServerProcess(dataPath: data, arguments: ["--workers", "0", "--visibility-timeout", "60s"])
        let worker = try await ServerProcess("worker", dataPath: data, arguments: ["--workers", "3", "--payment-latency", "1h"])
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let client = APIClient(http: http, base: api.baseURL)
            for _ in 0..<3 { #expect(try await client.call(.POST, "/orders/async", json: seedOrder).status == 202) }
            try await expectEventually(timeout: .seconds(30)) { (try? await client.stats().int("queue", "in_flight")) == 3 }
            worker.kill9()
            // Once its heartbeats are stale, no live worker holds the three deliveries.
            try await expectEventually(timeout: .seconds(30)) { (try? await client.stats().int("workers", "count")) == 0 }
            let run = try await ServerProcess.runCommand(["monitor", "--url", api.baseURL, "--interval", "200ms", "--duration", "1s"], within: .seconds(60))
            #expect(run.status == 0, "\(run.errors)")
            let line = try #require(run.output.split(separator: "\n").dropFirst().first.map(String.init))
            let match = try #require(line.firstMatch(of: /\(3 in flight, held by no live worker: leases end in (\d+) s\)/), "\(line)")
            #expect((1...60).contains(Int(match.1) ?? 0), "\(line)")
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
        _ = try await api.terminate()
    }

    @Test func aServerThatGoesAwayIsMarkedAndTheMonitorKeepsSampling() async throws {
        let server = try await ServerProcess(dataPath: ServerProcess.temporaryDataPath(), arguments: ["--workers", "0"])
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flashsale-monitor-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let out = directory.appendingPathComponent("out"), csv = directory.appendingPathComponent("samples.csv")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        let monitor = Process()
        monitor.executableURL = URL(fileURLWithPath: ServerProcess.binary)
        monitor.arguments = ["monitor", "--url", server.baseURL, "--interval", "200ms", "--duration", "20s", "--csv", csv.path]
        monitor.standardOutput = try FileHandle(forWritingTo: out)
        monitor.standardError = monitor.standardOutput
        try monitor.run()
        defer { if !monitor.hasEnded { monitor.terminate() } }
        @Sendable func lines() -> [String] { ((try? String(contentsOf: out, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
        // A sample line: its time, then figures ("   0.4s         0 …"); a missed one: its time, then "(missed: …".
        @Sendable func samples() -> Int { lines().count { $0.range(of: #"^ *[0-9]+\.[0-9]s +[0-9]"#, options: .regularExpression) != nil } }
        try await expectEventually(timeout: .seconds(15)) { samples() >= 2 }
        server.kill9()
        try await expectEventually(timeout: .seconds(15)) { lines().contains { $0.contains("(missed:") } }
        #expect(!monitor.hasEnded, "the monitor exited when its server went away: \(lines())")
        try #require(await monitor.waitForEnd(within: .seconds(60)))
        // It ran its whole duration, marking each sample it could not take, and said so in the CSV too.
        #expect(monitor.endStatus == 0, "\(lines())")
        #expect(lines().count { $0.contains("(missed:") } >= 2)
        let rows = try String(contentsOf: csv, encoding: .utf8).split(separator: "\n").dropFirst()
        #expect(rows.contains { $0.hasSuffix(",,,,") })
        #expect(rows.contains { !$0.hasSuffix(",") })
    }
}

/// A free loopback port (bound, then released).
enum ChildPort {
    static func free() async throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw ServerError("no free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
