import FlashLab
import FlashWorkers
import Foundation
import Testing

/// `flashsale plan --simulate --workers auto`: its scenarios and recorded traces.
@Suite("Scaling scenarios")
struct ScalingScenarioTests {
    let config = WorkerScaler.Configuration(minWorkers: 1, maxWorkers: 500, targetWait: .seconds(2),
                                            scaleDownWindow: .seconds(10), expectedServiceTime: .milliseconds(500))

    func file(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "flashsale-trace-\(UUID().uuidString).csv"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func aTraceOfTimestampsIsReplayedOrderByOrder() throws {
        // 100 orders a second for 10 s, as Unix timestamps with a header.
        let stamps = (0..<1_000).map { String(format: "%.3f", 1_700_000_000 + Double($0) / 100) }
        let path = try file("timestamp\n" + stamps.joined(separator: "\n") + "\n")
        let scenario = try ScalingScenario.named(path, demand: 1, duration: 1)
        #expect(abs(scenario.duration - 10.99) < 0.01)
        let result = PoolSimulation(scaler: config, serviceTime: 0.5).run(scenario.arrivals, duration: scenario.duration, through: 30)
        #expect(result.arrived == 1_000)
        #expect(result.completed == 1_000)
        // 100/s × 0.5 s: about 50 workers at the peak, back to 1 at the end.
        #expect((50...120).contains(result.peakWorkers), "\(result.peakWorkers)")
        #expect(result.samples.last?.workers == 1)
    }

    @Test func aLoadHistoryCSVIsReplayedAsItsRateSecondBySecond() throws {
        // Two seconds at 10/s, then two at 200/s (Locust's columns, one row a second).
        var rows = ["Timestamp,User Count,Type,Name,Requests/s,Failures/s"]
        for (second, rate) in [(0, 10), (1, 10), (2, 200), (3, 200)] { rows.append("\(1_700_000_000 + second),0,,Aggregated,\(rate),0") }
        let path = try file(rows.joined(separator: "\n") + "\n")
        let scenario = try ScalingScenario.named(path, demand: 1, duration: 1)
        #expect(scenario.duration == 4)
        let result = PoolSimulation(scaler: config, serviceTime: 0.5).run(scenario.arrivals, duration: scenario.duration)
        #expect(result.arrived == 420)
        #expect(result.completed == 420)
        let report = ScalingReport(scenario: "trace", result: result, serviceTime: 0.5, targetWait: 2)
        #expect(report.csv.hasPrefix("time,workers,busy,waiting,oldest_age_seconds,arrivals_per_second,completed\n"))
        #expect(report.csv.split(separator: "\n").count == result.samples.count + 1)
        #expect(report.charts.workers.hasPrefix("<svg") && report.charts.age.contains("</svg>"))
        #expect(report.text().contains("420 orders, 420 completed"))
    }

    @Test func namedScenariosShapeTheDemand() throws {
        let sale = try ScalingScenario.named("sale", demand: 60, duration: 60)
        let step = try ScalingScenario.named("step", demand: 60, duration: 60)
        let spike = try ScalingScenario.named("spike", demand: 60, duration: 60)
        func rates(_ scenario: ScalingScenario) -> [Double] {
            guard case let .rate(rate) = scenario.arrivals else { return [] }
            return [0, 10, 21, 30, 59, 61].map(rate)
        }
        #expect(rates(sale) == [60, 60, 60, 60, 60, 0])
        #expect(rates(step) == [0, 0, 60, 60, 60, 60])
        #expect(rates(spike) == [6, 6, 60, 6, 6, 6])
        #expect(throws: ScenarioError.self) { try ScalingScenario.named("/no/such/trace.csv", demand: 1, duration: 1) }
    }
}
