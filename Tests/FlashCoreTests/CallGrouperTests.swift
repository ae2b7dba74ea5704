import FlashCore
import Synchronization
import Testing

@Suite("Call grouper")
struct CallGrouperTests {
    /// Records each group's inputs; holds the first group until released, so later calls queue up.
    final class Recorder: Sendable {
        let groups = Mutex<[[Int]]>([])
        let gate = Mutex<CheckedContinuation<Void, Never>?>(nil)
        let firstStarted = Mutex<CheckedContinuation<Void, Never>?>(nil)

        func run(_ inputs: [Int]) async throws -> [String] {
            let isFirst = groups.withLock { groups in
                groups.append(inputs)
                return groups.count == 1
            }
            if isFirst {
                firstStarted.withLock { $0?.resume(); $0 = nil }
                await withCheckedContinuation { continuation in gate.withLock { $0 = continuation } }
            }
            if inputs.contains(-1) { throw Failure() }
            return inputs.map { "out\($0)" }
        }

        func release() async {
            while gate.withLock({ $0 == nil }) { await Task.yield() }
            gate.withLock { $0?.resume(); $0 = nil }
        }
    }

    struct Failure: Error {}

    /// Waits until `condition` holds: events, not time, however slow the machine.
    static func until(_ condition: () -> Bool) async {
        while !condition() { try? await Task.sleep(for: .milliseconds(1)) }
    }

    @Test func callsMadeWhileAGroupRunsShareTheNextOneAndEachGetsItsOwnOutput() async throws {
        let recorder = Recorder()
        let grouper = CallGrouper<Int, String>(maxWeight: 100) { try await recorder.run($0) }
        try await withThrowingTaskGroup(of: (Int, String).self) { tasks in
            await withCheckedContinuation { started in
                recorder.firstStarted.withLock { $0 = started }
                tasks.addTask { (0, try await grouper.call(0)) }
            }
            // The first group is running (and held): these ten wait, then run as one group.
            for input in 1...10 { tasks.addTask { (input, try await grouper.call(input)) } }
            await Self.until { grouper.waiting == 10 }
            await recorder.release()
            var outputs: [Int: String] = [:]
            for try await (input, output) in tasks { outputs[input] = output }
            #expect(outputs == Dictionary(uniqueKeysWithValues: (0...10).map { ($0, "out\($0)") }))
        }
        let groups = recorder.groups.withLock { $0 }
        #expect(groups.first == [0])
        #expect(groups.dropFirst().flatMap { $0 }.sorted() == Array(1...10))
        #expect(groups.count < 11, "the waiting calls ran in shared groups")
    }

    @Test func aGroupNeverPassesItsWeightAndAFailureReachesEveryCallOfItsGroupOnly() async throws {
        let recorder = Recorder()
        let grouper = CallGrouper<Int, String>(maxWeight: 3) { try await recorder.run($0) }
        let results = try await withThrowingTaskGroup(of: (Int, Bool).self) { tasks in
            await withCheckedContinuation { started in
                recorder.firstStarted.withLock { $0 = started }
                tasks.addTask { (0, (try? await grouper.call(0)) != nil) }
            }
            // Queued in this order while the first group is held.
            for (queued, input) in [1, 2, -1, 4].enumerated() {
                tasks.addTask { (input, (try? await grouper.call(input, weight: 2)) != nil) }
                await Self.until { grouper.waiting == queued + 1 }
            }
            await recorder.release()
            var results: [Int: Bool] = [:]
            for try await (input, succeeded) in tasks { results[input] = succeeded }
            return results
        }
        // Weight 2 against a limit of 3: every later call ran in a group of its own.
        #expect(recorder.groups.withLock { $0 } == [[0], [1], [2], [-1], [4]])
        #expect(results == [0: true, 1: true, 2: true, -1: false, 4: true])
    }

    @Test func aCallCancelledWhileWaitingLeavesTheLineAndNeverRuns() async throws {
        let recorder = Recorder()
        let grouper = CallGrouper<Int, String>(maxWeight: 100) { try await recorder.run($0) }
        await withCheckedContinuation { started in
            recorder.firstStarted.withLock { $0 = started }
            Task { _ = try? await grouper.call(0) }
        }
        let cancelled = Task { try await grouper.call(1) }
        await Self.until { grouper.waiting == 1 }
        let kept = Task { try await grouper.call(2) }
        await Self.until { grouper.waiting == 2 }
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        await recorder.release()
        #expect(try await kept.value == "out2")
        #expect(recorder.groups.withLock { $0 } == [[0], [2]])
    }

    struct Expired: Error {}

    @Test func aCallStillWaitingAtItsDeadlineLeavesWithItsErrorAndNeverRunsButOneInAGroupWaitsForIt() async throws {
        let recorder = Recorder()
        let grouper = CallGrouper<Int, String>(maxWeight: 100) { try await recorder.run($0) }
        // The first group starts at once, with a deadline long past by the time it ends.
        let running = Task { try await grouper.call(0, startingBy: .now + .seconds(3600)) { _ in Expired() } }
        await Self.until { recorder.groups.withLock { $0.count } == 1 }
        let late = Task { try await grouper.call(1, startingBy: .now + .milliseconds(50)) { _ in Expired() } }
        let patient = Task { try await grouper.call(2, startingBy: .now + .seconds(3600)) { _ in Expired() } }
        await Self.until { grouper.waiting == 2 }
        // The group ahead is stuck: call 1's deadline passes while it waits, and it is answered.
        await #expect(throws: Expired.self) { try await late.value }
        #expect(grouper.waiting == 1)
        await recorder.release()
        #expect(try await running.value == "out0")
        #expect(try await patient.value == "out2")
        #expect(recorder.groups.withLock { $0 } == [[0], [2]])
        // A deadline already past: refused at once, never run.
        await #expect(throws: Expired.self) { try await grouper.call(3, startingBy: .now - .seconds(1)) { _ in Expired() } }
        #expect(recorder.groups.withLock { $0 } == [[0], [2]])
    }

    struct Refused: Error { let refusal: AdmissionLine.Refusal }

    @Test func withALineACallThatCouldNotStartInTimeIsRefusedOnArrivalAndTheLineRecoversWhenAGroupEnds() async throws {
        let recorder = Recorder()
        let line = AdmissionLine(groupLimit: 100)
        let grouper = CallGrouper<Int, String>(maxWeight: 100, line: line) { try await recorder.run($0) }
        let refused: @Sendable (AdmissionLine.Refusal) -> any Error = { Refused(refusal: $0) }
        // The first group starts and is held: the store answers nothing from then on.
        let running = Task { try await grouper.call(0, startingBy: .now + .seconds(3600), orElse: refused) }
        await Self.until { recorder.groups.withLock { $0.count } == 1 }
        await Self.until { line.status(patience: .milliseconds(100)).stalled }
        // Nothing answered for longer than this call may wait: refused on arrival, never queued.
        do {
            _ = try await grouper.call(1, startingBy: .now + .milliseconds(100), orElse: refused)
            Issue.record("a call the stalled line could not start in time was let in")
        } catch let error as Refused {
            #expect(error.refusal == .forecast)
        }
        #expect(grouper.waiting == 0)
        // One that may wait an hour joins the line.
        let patient = Task { try await grouper.call(2, startingBy: .now + .seconds(3600), orElse: refused) }
        await Self.until { grouper.waiting == 1 }
        await recorder.release()
        #expect(try await running.value == "out0")
        #expect(try await patient.value == "out2")
        let status = line.status(patience: .milliseconds(100))
        #expect(!status.stalled)
        #expect(status.groupTime != nil)
        #expect(status.longestRecentWait > .zero, "the patient call's wait for its group was timed")
        #expect(recorder.groups.withLock { $0 } == [[0], [2]])
    }
}
