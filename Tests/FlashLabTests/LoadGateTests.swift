import FlashCore
import FlashServer
import Foundation
import Testing
@testable import FlashLab

/// What makes `flashsale load` a release gate: thresholds, stages and templated requests.
@Suite("Load thresholds, stages and templates")
struct LoadGateTests {
    // MARK: Thresholds

    @Test func thresholdsParseEveryMetricAndJudgeTheRun() throws {
        // 100 requests of 1…100 ms, 3 failed, over 5 s: p50 50 ms, p99 99 ms, errors 3%, 20/s.
        let result = LoadHTMLReportTests.result()
        func met(_ text: String) throws -> Bool { try LoadThreshold(parsing: text).isMet(by: result) }
        #expect(try met("p99<100ms") && !(try met("p99<90ms")))
        #expect(try met("p50 <= 51ms") && !(try met("p50<40ms")))
        #expect(try met("p99.9<2s"))
        #expect(try met("avg<60ms") && !(try met("avg<40ms")))
        #expect(try met("max<=101ms") && !(try met("max<99ms")))
        #expect(try met("errors<5%") && !(try met("errors<1%")) && !(try met("errors<0.02")))
        #expect(try met("rps>=19") && !(try met("rps>21")))
        for wrong in ["p99", "p99<50", "p0<1s", "p101<1s", "latency<1s", "errors<200%", "rps>fast"] {
            #expect(throws: TemplateError.self, "\(wrong)") { try LoadThreshold(parsing: wrong) }
        }
        let report = LoadThreshold.report([try LoadThreshold(parsing: "p99<100ms"), try LoadThreshold(parsing: "errors<1%")], for: result)
        #expect(report.contains("✓ passed  p99<100ms"))
        #expect(report.contains("✗ FAILED  errors<1%  (measured 3.00%)"))
    }

    @Test func aRunWithoutRequestsMeetsNoLatencyThreshold() throws {
        var empty = LoadHTMLReportTests.result(seconds: 0)
        empty.aggregated = EndpointStatistics(method: "", name: "Aggregated")
        #expect(!(try LoadThreshold(parsing: "p99<1h").isMet(by: empty)))
        #expect(!(try LoadThreshold(parsing: "errors<1%").isMet(by: empty)))
    }

    // MARK: Stages

    @Test func stagesRampTheRateLinearlyAndSendTheIntegral() throws {
        let stages = try LoadStages(parsing: "2s:50/s,2s:100/s,1s:0/s")
        #expect(stages.kind == .rate)
        #expect(stages.duration == 5)
        #expect(stages.target(at: 1) == 25)
        #expect(stages.target(at: 3) == 75)
        #expect(stages.target(at: 4.5) == 50)
        var times = stages.sendTimes()
        var all: [Double] = []
        while let next = times.next() { all.append(next) }
        // 0→50/s over 2 s is 50 requests, 50→100/s over 2 s 150, 100→0/s over 1 s 50.
        #expect(all.count == 250)
        #expect(zip(all, all.dropFirst()).allSatisfy { $0 <= $1 })
        #expect(all.last! < 5)
        #expect(all.count { $0 < 2 } == 50)
        #expect(all.count { $0 >= 2 && $0 < 4 } == 150)
        // A constant stage from a starting rate is that rate.
        var constant = try LoadStages(parsing: "1s:10/s").sendTimes(from: 10)
        var count = 0
        while constant.next() != nil { count += 1 }
        #expect(count == 10)
    }

    @Test func stagesInUsersAndMistakes() throws {
        let users = try LoadStages(parsing: "1s:4, 2s:4, 1s:0")
        #expect(users.kind == .users)
        #expect(users.peak == 4)
        #expect(users.target(at: 0.5) == 2)
        for wrong in ["", "10s", "10:100/s", "10s:100/s,10s:5", "10s:0/s", "10s:-1", "0s:10/s"] {
            #expect(throws: TemplateError.self, "\(wrong)") { try LoadStages(parsing: wrong) }
        }
    }

    @Test func anOpenLoopInStagesSendsEachStagesRequestsToTheServer() async throws {
        let (result, stored) = try await LoadGeneratorTests.runCountingOrders { config in
            config.stages = try? LoadStages(parsing: "1s:40/s,1s:40/s,1s:0/s")
            config.duration = 3
            config.timeout = 30
        }
        // 20 + 40 + 20 intended sends, every one waited for.
        #expect(result.aggregated.requests == 80)
        #expect(result.aggregated.failures == 0)
        #expect(stored == 80)
    }

    @Test func aClosedLoopInStagesFollowsTheUsersTarget() async throws {
        let (result, _) = try await LoadGeneratorTests.runCountingOrders { config in
            config.stages = try? LoadStages(parsing: "500ms:3,2s:3,500ms:0")
            config.duration = 3
            config.wait = 0.01...0.02
            config.timeout = 30
        }
        #expect(result.aggregated.requests > 0)
        #expect(result.aggregated.failures == 0)
        #expect(result.history.allSatisfy { $0.users <= 3 })
        #expect(result.history.contains { $0.users == 3 }, "\(result.history.map(\.users))")
    }

    // MARK: Templates

    @Test func templatesRenderTheirVariablesAfreshForEachRequest() throws {
        let context = TemplateContext(products: ["sku-1", "sku-2"])
        let template = try RequestTemplate(#"{"n": {{counter}}, "p": "{{product}}", "r": {{random:5:7}}, "c": {{customer}}, "t": "{{env:FLASHSALE_TEMPLATE_TEST}}", "u": "{{uuid}}"}"#,
                                           environment: ["FLASHSALE_TEMPLATE_TEST": "tok"])
        let bodies = (0..<50).map { _ in template.render(context) }
        let parsed = try bodies.map { try JSONValue.parse(Array($0.utf8)) }
        #expect(parsed.map { $0["n"]?.int } == (1...50).map { $0 })
        #expect(parsed.allSatisfy { ["sku-1", "sku-2"].contains($0["p"]?.string ?? "") })
        #expect(parsed.allSatisfy { (5...7).contains($0["r"]?.int ?? 0) })
        #expect(parsed.allSatisfy { (1...100_000).contains($0["c"]?.int ?? 0) })
        #expect(parsed.allSatisfy { $0["t"]?.string == "tok" })
        #expect(Set(parsed.compactMap { $0["u"]?.string }).count == 50)
        for wrong in ["{{nope}}", "{{counter", "{{random:9:1}}", "{{env:FLASHSALE_SURELY_UNSET_VARIABLE}}"] {
            #expect(throws: TemplateError.self, "\(wrong)") { try RequestTemplate(wrong, environment: [:]) }
        }
    }

    @Test func aTemplatedBodyAndHeaderLoadTheUsersOwnOrders() async throws {
        try await LabServer.with(LoadGeneratorTests.server(), logger: LoadGeneratorTests.logger) { url, system in
            var config = LoadConfiguration(host: url)
            config.endpoint = .async
            config.rate = 50
            config.requestLimit = 20
            config.duration = 60
            config.timeout = 30
            config.bodyTemplate = try RequestTemplate(#"{"order_id": "sale-{{counter}}", "customer_id": "c{{customer}}", "items": [{"product_id": "{{product}}", "quantity": 1}]}"#)
            config.headers = [.init(name: "Idempotency-Key", value: try RequestTemplate("key-{{uuid}}"))]
            config.products = ["sku-9"]
            let result = try await LoadGenerator(configuration: config).run()
            #expect(result.aggregated.requests == 20)
            #expect(result.aggregated.failures == 0)
            for n in 1...20 {
                let order = try #require(try await system.store.order(id: "sale-\(n)"))
                #expect(order.items.map(\.productID) == ["sku-9"])
            }
        }
    }
}
