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
        let worker = try await ServerProcess("worker", dataPath: data, arguments: ["--workers", "2", "--payment-latency", "3s", "--log-level", "notice"])
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let client = APIClient(http: http, base: api.baseURL)
            let workerSide = APIClient(http: http, base: worker.baseURL)
            for _ in 0..<10 { #expect(try await client.call(.POST, "/orders/async", json: seedOrder).status == 202) }
            // Two charges under way (and deliveries buffered for the workers); ten orders take 15 s.
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
            // The charges in progress when the pool saw the switch finish (at least the two seen
            // busy; more if a pair finished and the next began before the switch was read); then
            // nothing starts, however long the pause.
            try await expectEventually(timeout: .seconds(30)) { (try? await client.stats().int("orders", "processing")) == 0 }
            let charged = try #require(try await client.stats().int("orders", "completed"))
            #expect(charged >= 2 && charged < 10, "\(charged)")
            // Accepted while paused, too.
            #expect(try await client.call(.POST, "/orders/async", json: seedOrder).status == 202)
            try await Task.sleep(for: .seconds(2))
            let held = try await client.stats()
            #expect(held.int("orders", "completed") == charged)
            #expect(held.int("orders", "processing") == 0)
            #expect(held.int("orders", "pending") == 11 - charged)
            #expect(held.int("queue", "visible") == 11 - charged)
            #expect(held.json?["queue"]?["paused"] == .bool(true))
            #expect(worker.log.contains("consuming paused"), "\(worker.log)")

            #expect(try await client.call(.POST, "/admin/queues/payments/resume").status == 200)
            try await expectEventually(timeout: .seconds(60)) { (try? await client.stats().int("orders", "completed")) == 11 }
            let done = try await client.stats()
            #expect(done.int("payments", "charges") == 11)
            #expect(done.int("queue", "dead_letter") == 0)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
        _ = try await worker.terminate()
        _ = try await api.terminate()
    }

    @Test func aWorkerStartedDuringAPauseTakesNothingAndAPendingOrderPromisesNoCompletion() async throws {
        let data = ServerProcess.temporaryDataPath()
        let api = try await ServerProcess(dataPath: data, arguments: ["--workers", "0"])
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let client = APIClient(http: http, base: api.baseURL)
            #expect(try await client.call(.POST, "/admin/queues/payments/pause").status == 200)
            for _ in 0..<4 { #expect(try await client.call(.POST, "/orders/async", json: seedOrder).status == 202) }
            let worker = try await ServerProcess("worker", dataPath: data, arguments: ["--workers", "4", "--payment-latency", "5ms", "--log-level", "notice"])
            try await expectEventually(timeout: .seconds(30)) { worker.log.contains("consuming is paused") }
            try await Task.sleep(for: .seconds(2))
            let held = try await client.stats()
            #expect(held.int("orders", "pending") == 4, "a worker started during the pause took orders")
            #expect(held.int("payments", "charges") == 0)
            // A pending order shows its place in the queue, but no completion time is promised.
            let orders = try await client.call(.GET, "/admin/orders?limit=1")
            let id = try #require(orders.json?["orders"]?.array?.first?["order_id"]?.string)
            let shown = try await client.call(.GET, "/orders/\(id)")
            #expect(shown.json?["estimated_completion"] == .null, "\(String(describing: shown.json))")
            #expect(try await client.call(.POST, "/admin/queues/payments/resume").status == 200)
            try await expectEventually(timeout: .seconds(60)) { (try? await client.stats().int("orders", "completed")) == 4 }
            _ = try await worker.terminate()
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
        _ = try await api.terminate()
    }
}
