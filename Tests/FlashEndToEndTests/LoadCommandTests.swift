import Foundation
import Testing

/// `flashsale load` as a release pipeline runs it: a missed threshold fails the job.
@Suite("flashsale load gates a release", .serialized)
struct LoadCommandTests {
    @Test func aMissedThresholdExitsNonZeroAndAMetOneZero() async throws {
        let server = try await ServerProcess(dataPath: ServerProcess.temporaryDataPath(), arguments: ["--workers", "0"])
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flashsale-load-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let common = ["load", "--host", server.baseURL, "--endpoint", "async", "--rate", "50/s", "--duration", "1s", "--timeout", "60s", "--quiet"]

        // No HTTP answer comes back within a microsecond: a threshold no server can meet.
        let missed = try await ServerProcess.runCommand(common + ["--threshold", "p50<1us", "--threshold", "errors<1%"], within: .seconds(120))
        #expect(missed.status == 1, "\(missed.errors)")
        #expect(missed.output.contains("✗ FAILED  p50<1us"), "\(missed.output)")
        #expect(missed.output.contains("✓ passed  errors<1%"), "\(missed.output)")
        #expect(missed.errors.contains("1 of 2 thresholds missed: p50<1us"), "\(missed.errors)")

        let prefix = directory.appendingPathComponent("run").path
        let met = try await ServerProcess.runCommand(common + ["--threshold", "p99<1h", "--threshold", "errors<1%", "--csv", prefix], within: .seconds(120))
        #expect(met.status == 0, "\(met.errors)")
        #expect(met.output.contains("✓ passed  p99<1h"), "\(met.output)")
        let report = try String(contentsOfFile: prefix + "_report.html", encoding: .utf8)
        #expect(report.hasPrefix("<!DOCTYPE html>") && report.contains("<svg"))
        #expect(FileManager.default.fileExists(atPath: prefix + "_stats.csv"))

        // Every request failing fails the run even without a threshold.
        let failing = try await ServerProcess.runCommand(["load", "--host", server.baseURL, "--endpoint", "/no/such/path", "--method", "GET",
                                                          "--rate", "20/s", "--duration", "1s", "--timeout", "60s", "--quiet"], within: .seconds(120))
        #expect(failing.status == 1, "\(failing.errors)")
        #expect(failing.errors.contains("every request failed"), "\(failing.errors)")
        _ = try await server.terminate()
    }

    @Test func stagesAndTemplatesAreRefusedClearlyWhenWrong() async throws {
        for (arguments, message) in [(["--stages", "10s:100/s,5s:5"], "every target as a rate"),
                                     (["--stages", "10s:100/s", "--duration", "5s"], "leave out --duration"),
                                     (["--body", "{{nope}}"], "unknown variable {{nope}}"),
                                     (["--header", "no colon here"], "--header must be 'Name: value'"),
                                     (["--threshold", "p99<50"], "a latency takes a duration with its unit")] {
            let run = try await ServerProcess.runCommand(["load"] + arguments, within: .seconds(60))
            #expect(run.status != 0)
            #expect(run.errors.contains(message), "\(arguments): \(run.errors)")
            #expect(run.errors.contains("Usage: flashsale load"), "\(run.errors)")
        }
    }
}
