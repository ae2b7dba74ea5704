import ArgumentParser
import FlashCore
import FlashQueue
import FlashPostgres
import FlashSQLite
import Foundation
import Logging

/// `flashsale bench queue`: the queue's two headline figures, with durable commits, on the
/// embedded SQLite file or (with `--database`) on PostgreSQL.
///
/// 1. Full cycle: `--cyclers` concurrent loops, each sending a batch of 10, receiving a batch of
///    10 and deleting it, for `--seconds`. Reports messages per second through the whole cycle.
/// 2. Concurrent senders: `--senders` tasks each sending single messages for `--seconds`.
///    Reports sends per second, and how many sends shared each fsync.
struct QueueBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue",
        abstract: "Benchmark the queue (durable commits): the embedded SQLite file, or PostgreSQL with --database.")

    @Option(help: "Database file for the run (deleted first).")
    var data: String = "./bench-queue.db"

    @Option(help: "PostgreSQL URL instead of the file: the run uses a schema of its own and drops it at the end.")
    var database: String?

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
        if let database {
            try await runOnPostgres(url: database)
            return
        }
        guard let mode = SQLiteDatabase.Synchronous(rawValue: synchronous.uppercased()) else {
            throw ValidationError("--synchronous must be FULL or NORMAL")
        }
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: data + suffix) }
        let database = try SQLiteDatabase(path: data, synchronous: mode)
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: data + suffix) } }
        let before = database.writerStatistics
        let cycle = try await fullCycle(try await database.createQueue("bench-cycle"))
        let afterCycle = database.writerStatistics
        let sends = try await concurrentSends(try await database.createQueue("bench-send"))
        let afterSend = database.writerStatistics
        try database.close()

        let cycleGroup = Double(afterCycle.operations - before.operations) / Double(max(1, afterCycle.commits - before.commits))
        let sendGroup = Double(afterSend.operations - afterCycle.operations) / Double(max(1, afterSend.commits - afterCycle.commits))
        report(store: "SQLite WAL, synchronous=\(mode.rawValue)", cycleRate: cycle, sendRate: sends,
               perCommit: (cycleGroup, sendGroup), extraJSON: #""synchronous":"\#(mode.rawValue)""#)
    }

    /// The same two phases on PostgreSQL, in a throwaway schema (commits are as durable as the
    /// server is configured: `synchronous_commit` is left as the server has it).
    func runOnPostgres(url: String) async throws {
        var configuration: PostgresDatabase.Configuration
        do { configuration = try PostgresDatabase.Configuration(url: url) } catch { throw ValidationError("--database: \(error)") }
        let schema = "flashsale_bench_\(UInt32.random(in: 0...UInt32.max))"
        configuration.schema = schema
        configuration.maxConnections = max(configuration.maxConnections, min(64, max(cyclers, senders)))
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let database = PostgresDatabase(configuration: configuration, logger: logger)
        try await database.withRunning {
            do {
                let cycle = try await fullCycle(try await database.createQueue("bench-cycle"))
                let sends = try await concurrentSends(try await database.createQueue("bench-send"))
                try await database.dropSchema()
                report(store: "PostgreSQL \(configuration.host):\(configuration.port), \(configuration.maxConnections) connections", cycleRate: cycle,
                       sendRate: sends, perCommit: nil, extraJSON: #""store":"postgres""#)
            } catch {
                try? await database.dropSchema()
                throw error
            }
        }
    }

    func fullCycle(_ queue: some MessageQueue) async throws -> Double {
        try await Self.fullCycle(queue, seconds: seconds, cyclers: cyclers)
    }

    func concurrentSends(_ queue: some MessageQueue) async throws -> Double {
        try await Self.concurrentSends(queue, seconds: seconds, senders: senders)
    }

    /// Phase 1: `cyclers` loops of send 10 → receive 10 → delete them; messages per second.
    static func fullCycle(_ queue: some MessageQueue, seconds: Double, cyclers: Int) async throws -> Double {
        let result = try await Self.timed(seconds: seconds, workers: cyclers) {
            let batch = (0..<10).map { _ in OutgoingMessage(Self.body) }
            _ = try await queue.sendBatch(batch)
            let received = try await queue.receive(maxMessages: 10, wait: .zero, visibilityTimeout: .seconds(30))
            if !received.isEmpty { _ = try await queue.deleteBatch(received.map(\.receiptHandle)) }
            return received.count
        }
        return Double(result.count) / result.elapsed
    }

    /// Phase 2: `senders` tasks each sending single messages; sends per second.
    static func concurrentSends(_ queue: some MessageQueue, seconds: Double, senders: Int) async throws -> Double {
        let result = try await Self.timed(seconds: seconds, workers: senders) {
            _ = try await queue.send(Self.body)
            return 1
        }
        return Double(result.count) / result.elapsed
    }

    static let body = #"{"order_id":"0190a7e2-1f3b-7cc4-9b1e-6a3c2b1d0e9f","customer_id":1234,"items":[{"product_id":"PROD-001","quantity":2,"price":49.99}]}"#

    func report(store: String, cycleRate: Double, sendRate: Double, perCommit: (cycle: Double, send: Double)?, extraJSON: String) {
        if json {
            var fields = [#""full_cycle_messages_per_second":\#(Int(cycleRate))"#, #""concurrent_sends_per_second":\#(Int(sendRate))"#]
            if let perCommit {
                fields.append(#""cycle_ops_per_commit":\#(String(format: "%.1f", perCommit.cycle))"#)
                fields.append(#""send_ops_per_commit":\#(String(format: "%.1f", perCommit.send))"#)
            }
            fields.append(extraJSON)
            print("{" + fields.joined(separator: ",") + "}")
        } else {
            print("queue benchmark (\(store), \(ProcessInfo.processInfo.activeProcessorCount) cores)")
            let cycleNote = perCommit.map { String(format: "  (%.1f ops per commit)", $0.cycle) } ?? ""
            let sendNote = perCommit.map { String(format: "  (%.1f sends per commit)", $0.send) } ?? ""
            print(String(format: "full cycle (send 10 → receive 10 → delete), %d loops: %8.0f messages/s", cyclers, cycleRate) + cycleNote)
            print(String(format: "single-message sends, %d concurrent senders: %8.0f sends/s", senders, sendRate) + sendNote)
        }
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
