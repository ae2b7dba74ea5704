import ArgumentParser
import FlashCore
import FlashQueue
import FlashSQLite
import Foundation

/// `flashsale bench queue`: the embedded queue's two headline figures, with durable commits.
///
/// 1. Full cycle: `--cyclers` concurrent loops, each sending a batch of 10, receiving a batch of
///    10 and deleting it, for `--seconds`. Reports messages per second through the whole cycle.
/// 2. Concurrent senders: `--senders` tasks each sending single messages for `--seconds`.
///    Reports sends per second, and how many sends shared each fsync.
struct QueueBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue",
        abstract: "Benchmark the embedded SQLite queue (durable commits).")

    @Option(help: "Database file for the run (deleted first).")
    var data: String = "./bench-queue.db"

    @Option(help: "Seconds each of the two phases runs.")
    var seconds: Double = 5

    @Option(help: "Concurrent send/receive/delete loops in the full-cycle phase.")
    var cyclers: Int = 16

    @Option(help: "Concurrent single-message senders in the send phase.")
    var senders: Int = 64

    @Option(help: "SQLite synchronous mode: FULL (durable against power loss) or NORMAL.")
    var synchronous: String = "FULL"

    @Flag(help: "Print the figures as one JSON object.")
    var json = false

    func run() async throws {
        guard let mode = SQLiteDatabase.Synchronous(rawValue: synchronous.uppercased()) else {
            throw ValidationError("--synchronous must be FULL or NORMAL")
        }
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: data + suffix) }
        let database = try SQLiteDatabase(path: data, synchronous: mode)
        let body = #"{"order_id":"0190a7e2-1f3b-7cc4-9b1e-6a3c2b1d0e9f","customer_id":1234,"items":[{"product_id":"PROD-001","quantity":2,"price":49.99}]}"#

        // Phase 1: full cycle.
        let cycleQueue = try await database.createQueue("bench-cycle")
        let before = database.writerStatistics
        let cycle = try await Self.timed(seconds: seconds, workers: cyclers) {
            let batch = (0..<10).map { _ in OutgoingMessage(body) }
            _ = try await cycleQueue.sendBatch(batch)
            let received = try await cycleQueue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(30))
            if !received.isEmpty { _ = try await cycleQueue.deleteBatch(received.map(\.receiptHandle)) }
            return received.count
        }
        let afterCycle = database.writerStatistics

        // Phase 2: concurrent single-message senders.
        let sendQueue = try await database.createQueue("bench-send")
        let sends = try await Self.timed(seconds: seconds, workers: senders) {
            _ = try await sendQueue.send(body)
            return 1
        }
        let afterSend = database.writerStatistics
        try database.close()

        let cycleRate = Double(cycle.count) / cycle.elapsed
        let sendRate = Double(sends.count) / sends.elapsed
        let cycleGroup = Double(afterCycle.operations - before.operations) / Double(max(1, afterCycle.commits - before.commits))
        let sendGroup = Double(afterSend.operations - afterCycle.operations) / Double(max(1, afterSend.commits - afterCycle.commits))
        if json {
            print(#"{"full_cycle_messages_per_second":\#(Int(cycleRate)),"concurrent_sends_per_second":\#(Int(sendRate)),"cycle_ops_per_commit":\#(String(format: "%.1f", cycleGroup)),"send_ops_per_commit":\#(String(format: "%.1f", sendGroup)),"synchronous":"\#(mode.rawValue)"}"#)
        } else {
            print("embedded queue benchmark (SQLite WAL, synchronous=\(mode.rawValue), \(ProcessInfo.processInfo.activeProcessorCount) cores)")
            print(String(format: "full cycle (send 10 → receive 10 → delete), %d loops: %8.0f messages/s  (%.1f ops per commit)", cyclers, cycleRate, cycleGroup))
            print(String(format: "single-message sends, %d concurrent senders: %8.0f sends/s     (%.1f sends per commit)", senders, sendRate, sendGroup))
        }
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: data + suffix) }
    }

    /// Runs `step` in `workers` concurrent loops for `seconds`; returns the summed counts and the elapsed seconds.
    static func timed(seconds: Double, workers: Int, step: @escaping @Sendable () async throws -> Int) async throws -> (count: Int, elapsed: Double) {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + .milliseconds(Int64(seconds * 1000))
        let count = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<workers {
                group.addTask {
                    var count = 0
                    while clock.now < deadline { count += try await step() }
                    return count
                }
            }
            return try await group.reduce(0, +)
        }
        return (count, (clock.now - start).asSeconds)
    }
}
