import AsyncHTTPClient
import FlashCore
import Foundation
import Testing

/// Pausing consuming the payments queue, as an operator does when the gateway misbehaves: the
/// fleet's workers finish the charges in progress and take nothing new; received but unstarted
/// deliveries go back; orders keep being accepted and wait; resuming charges them all.
@Suite("Pause and resume consuming", .serialized)
struct PauseTests {
    @Test func chargesInProgressFinishNothingNewIsTakenAndResumeChargesTheRest() async throws {
        let data = ServerProcess.temporaryDataPath()
        let api = try await ServerProcess(dataPath: data, arguments: ["--workers", "0"])
        // A second process's workers: the switch is the fleet's, not one process's.
        let worker = try await ServerProcess("worker", dataPath: data, arguments: ["--workers", "2", "--payment-latency", "1500ms", "--log-level", "notice"])
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let client = APIClient(http: http, base: api.baseURL)
            let workerSide = APIClient(http: http, base: worker.baseURL)
            for _ in 0..<6 { #expect(try await client.call(.POST, "/orders/async", json: seedOrder).status == 202) }
            // Two charges under way (and deliveries buffered for the workers).
            try await expectEventually(timeout: .seconds(30)) {
                let workers = try? await workerSide.call(.GET, "/health").int("workers")
                let busy = try? await client.stats().int("workers", "busy")
                return workers == 2 && busy == 2
            }
            let paused = try await client.call(.POST, "/admin/queues/payments/pause")
            #expect(paused.status == 200)
            @Sendable func metrics() async -> String {
                guard let response = try? await http.execute(HTTPClientRequest(url: worker.baseURL + "/metrics"), timeout: .seconds(10)),
                      let body = try? await response.body.collect(upTo: 4 << 20) else { return "" }
                return String(buffer: body)
            }
            try await expectEventually(timeout: .seconds(30)) { await metrics().contains("\nflashsale_process_consuming_paused 1") }
            // The two charges finish; the four others wait in the queue, none started.
            try await expectEventually(timeout: .seconds(30)) { (try? await client.stats().int("orders", "completed")) == 2 }
            try await expectEventually(timeout: .seconds(30)) { (try? await client.stats().int("orders", "processing")) == 0 }
            // Accepted while paused, too.
            #expect(try await client.call(.POST, "/orders/async", json: seedOrder).status == 202)
            try await Task.sleep(for: .seconds(2))
            let held = try await client.stats()
            #expect(held.int("orders", "completed") == 2)
            #expect(held.int("orders", "pending") == 5)
            #expect(held.int("queue", "visible") == 5)
            #expect(held.json?["queue"]?["paused"] == .bool(true))
            #expect(worker.log.contains("consuming paused"), "\(worker.log)")

            #expect(try await client.call(.POST, "/admin/queues/payments/resume").status == 200)
            try await expectEventually(timeout: .seconds(60)) { (try? await client.stats().int("orders", "completed")) == 7 }
            let done = try await client.stats()
            #expect(done.int("payments", "charges") == 7)
            #expect(done.int("queue", "dead_letter") == 0)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
        _ = try await worker.terminate()
        _ = try await api.terminate()
    }
}
