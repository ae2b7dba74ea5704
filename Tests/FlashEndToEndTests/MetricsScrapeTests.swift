import AsyncHTTPClient
import FlashCore
import Foundation
import Testing

/// Prometheus scrapes every kind of process: the API, a worker's side port and the gateway.
@Suite("Metrics of every process", .serialized)
struct MetricsScrapeTests {
    /// `name{labels}` → value, from a Prometheus text exposition.
    static func scrape(_ http: HTTPClient, _ base: String) async throws -> [String: Double] {
        let response = try await http.execute(HTTPClientRequest(url: base + "/metrics"), timeout: .seconds(60))
        #expect(response.status.code == 200)
        #expect(response.headers.first(name: "Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        let text = String(buffer: try await response.body.collect(upTo: 4 << 20))
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                Issue.record("not an exposition line: \(line)")
                continue
            }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    @Test func theAPIAWorkerAndTheGatewayEachExposeTheirOwnFigures() async throws {
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let data = ServerProcess.temporaryDataPath()
        let gateway = try await ServerProcess("gateway", dataPath: data + ".gateway", arguments: ["--latency", "5ms"])
        let remote = ["--payment-url", gateway.baseURL]
        let api = try await ServerProcess(dataPath: data, arguments: ["--workers", "0"] + remote)
        let worker = try await ServerProcess("worker", dataPath: data, arguments: ["--workers", "4"] + remote)
        let client = APIClient(http: http, base: api.baseURL)
        do {
            for _ in 0..<20 { #expect(try await client.call(.POST, "/orders/async", json: seedOrder).status == 202) }
            try await expectEventually(timeout: .seconds(60)) { try await client.stats().int("orders", "completed") == 20 }

            let apiFigures = try await Self.scrape(http, api.baseURL)
            #expect(apiFigures[#"flashsale_orders_accepted_total{endpoint="async"}"#] == 20)
            #expect(apiFigures[#"flashsale_http_requests_total{method="POST",route="/orders/async",status="202"}"#] == 20)
            #expect(apiFigures[#"flashsale_orders{status="completed"}"#] == 20)
            #expect(apiFigures["flashsale_process_workers"] == 0)
            // The fleet's workers, from the worker process's heartbeat: listed while its last one is
            // fresher than 3.5 s, which on a starved machine holds only eventually.
            try await expectEventually(timeout: .seconds(60)) { try await Self.scrape(http, api.baseURL)["flashsale_workers"] == 4 }

            // The worker counts an order finished just after it stores the order's end, which the
            // API's figures above may show first: on a starved machine, only eventually.
            try await expectEventually(timeout: .seconds(60)) {
                try await Self.scrape(http, worker.baseURL)[#"flashsale_orders_finished_total{by="worker",status="completed"}"#] == 20
            }
            let workerFigures = try await Self.scrape(http, worker.baseURL)
            #expect(workerFigures[#"flashsale_orders_finished_total{by="worker",status="completed"}"#] == 20)
            #expect(workerFigures[#"flashsale_payments_total{outcome="approved"}"#] == 20)
            #expect(workerFigures[#"flashsale_payment_duration_seconds_count{outcome="approved"}"#] == 20)
            #expect(workerFigures["flashsale_process_workers"] == 4)
            #expect(workerFigures[#"flashsale_orders_accepted_total{endpoint="async"}"#] == 0)
            #expect(workerFigures[#"flashsale_queue_messages{state="visible"}"#] == 0)

            let gatewayFigures = try await Self.scrape(http, gateway.baseURL)
            #expect(gatewayFigures[#"flashsale_gateway_charges_total{outcome="approved"}"#] == 20)
            #expect(gatewayFigures[#"flashsale_gateway_charge_duration_seconds_count{outcome="approved"}"#] == 20)
            // Charges are counted once per side: a sum of flashsale_payments_total over every process is the workers'.
            #expect(gatewayFigures[#"flashsale_payments_total{outcome="approved"}"#] == nil)
            #expect(gatewayFigures[#"flashsale_ledger_charges{outcome="approved"}"#] == 20)
            #expect(gatewayFigures[#"flashsale_http_requests_total{method="POST",route="/charges",status="200"}"#] == 20)
        } catch {
            for process in [worker, api, gateway] { process.kill9() }
            try? await http.shutdown()
            throw error
        }
        for process in [worker, api, gateway] { #expect(try await process.terminate() == 0) }
        try await http.shutdown()
    }
}
