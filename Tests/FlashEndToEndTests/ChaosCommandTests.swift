import FlashCore
import Foundation
import Testing

/// `flashsale chaos`, the reduced tier the test command runs: every topology it can start here
/// (the embedded process, a fleet on one file, PostgreSQL with its restart and SIGSTOP when the
/// test command's cluster is there, and SQS behind an outbox on its local AWS endpoint), a few
/// faults each, the promise checked from outside.
/// The full run (`--faults 100`) is the README's; its summaries are in the Guarantees section.
@Suite("flashsale chaos", .serialized)
struct ChaosCommandTests {
    static func chaos(_ arguments: [String]) async throws -> (status: Int32, output: String, errors: String) {
        // Bounded: a run that never ends is a failure, not a hung suite.
        try await ServerProcess.runCommand(["chaos"] + arguments, within: .seconds(900))
    }

    @Test func aFewFaultsPerTopologyBreakNoPromise() async throws {
        let environment = ProcessInfo.processInfo.environment
        var arguments = ["--faults", "4", "--interval", "700ms", "--clients", "4", "--json",
                         "--output", FileManager.default.temporaryDirectory.appendingPathComponent("flashsale-chaos-\(UUID().uuidString)").path]
        var expected = ["embedded", "fleet"]
        if let postgres = environment["FLASHSALE_TEST_POSTGRES"] {
            arguments += ["--database", postgres]
            if let directory = environment["FLASHSALE_TEST_POSTGRES_DIR"] { arguments += ["--postgres-dir", directory] }
            expected.append("postgres")
        }
        if let aws = environment["FLASHSALE_TEST_AWS_ENDPOINT"] {
            arguments += ["--aws-endpoint", aws]
            expected.append("sqs")
        }
        let run = try await Self.chaos(arguments)
        #expect(run.status == 0, "\(run.output)\n\(run.errors)")
        let summaries = try JSONValue.parse(Array(run.output.utf8)).array ?? []
        #expect(summaries.compactMap { $0.at(["topology"])?.string } == expected)
        for summary in summaries {
            let name = summary.at(["topology"])?.string ?? "?"
            // The run was real: faults injected, orders acknowledged and settled.
            let faults = summary.at(["faults"])?.object?.values.compactMap(\.int).reduce(0, +) ?? 0
            #expect(faults == 4, "\(name)")
            #expect((summary.at(["acknowledged"])?.int ?? 0) > 0, "\(name)")
            #expect((summary.at(["completed"])?.int ?? 0) > 0, "\(name)")
            for violation in ["lost", "presentAfterRefusal", "chargedTwice", "completedWithoutCharge", "failedWithCharge",
                              "chargedAfterNotCharged", "stuck", "oversold", "stockNotConserved"] {
                #expect(summary.at([violation])?.int == 0, "\(name): \(violation) in \(run.output)")
            }
            #expect(summary.at(["crashed"])?.array?.isEmpty == true, "\(name)")
        }
    }

    @Test func badOptionsAreRefusedBeforeAnythingStarts() async throws {
        for (arguments, fragment) in [(["--topology", "cloud"], "--topology"), (["--topology", "postgres"], "--database"), (["--topology", "sqs"], "--aws-endpoint"),
                                      (["--interval", "1ms"], "--interval"), (["--clients", "0"], "--clients"), (["--max-open", "0"], "--max-open")] {
            let run = try await Self.chaos(arguments)
            #expect(run.status != 0)
            #expect(run.errors.contains(fragment), "\(arguments): \(run.errors)")
        }
    }
}
