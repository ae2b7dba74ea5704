import ArgumentParser
import AsyncHTTPClient
import FlashCore
import FlashLab
import Foundation

/// `flashsale monitor`: the queue over time, from `GET /stats` (the seeds' monitor_queue.sh, without AWS).
struct MonitorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "monitor",
        abstract: "Sample a server's /stats and print (and write as CSV) the queue, processing rate and workers over time.")

    @Option(help: "Base URL of the server.") var url = "http://127.0.0.1:8080"
    @Option(help: "Sampling interval.") var interval = "1s"
    @Option(help: "Stop after this long (default: until interrupted).") var duration: String?
    @Flag(help: "Stop once the queue is empty and nothing is pending or processing.") var untilDrained = false
    @Option(help: "Also write the samples to this CSV file.") var csv: String?
    @Option(help: "How long to keep trying a server that does not answer yet before giving up (exit 1).") var wait = "10s"

    func validate() throws {
        do { try Reachability.checkURL(url, option: "--url") } catch { throw ValidationError(error.description) }
    }

    func run() async throws {
        guard let patience = Duration(parsing: wait) else { throw ValidationError("--wait must be a duration, \(Duration.acceptedForms)") }
        let base = url.hasSuffix("/") ? String(url.dropLast()) : url
        try await Reachability.wait(for: base + "/stats", within: patience) { error, left in
            FileHandle.standardError.write(Data("waiting for \(base)/stats: \(error); trying again (\(left.shortDescription) left)\n".utf8))
        }
        guard let step = Duration(parsing: interval), step > .zero else { throw ValidationError("--interval must be a positive duration, \(Duration.acceptedForms)") }
        var limit: Double?
        if let duration {
            guard let value = Duration(parsing: duration) else { throw ValidationError("--duration must be a duration, \(Duration.acceptedForms)") }
            limit = value.asSeconds
        }
        var file: FileHandle?
        if let csv {
            _ = FileManager.default.createFile(atPath: csv, contents: Data((StatsSample.csvHeader + "\n").utf8))
            file = FileHandle(forWritingAtPath: csv)
            file?.seekToEndOfFile()
        }
        say("  time   visible  in_flight  delayed  dead_letter  pending  processing  completed  failed  processed/s  workers  busy  drain ETA")
        // A server that is down is a missed sample at once, not after the pool has retried
        // connecting for the whole request timeout.
        var client = HTTPClient.Configuration()
        client.connectionPool.retryConnectionEstablishment = false
        client.timeout = .init(connect: .seconds(2), read: .seconds(5))
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: client)
        let untilDrained = untilDrained
        let stopAfter = limit
        let output = file.map { UncheckedFile(handle: $0) }
        do {
            try await StatsMonitor(url: url, interval: step.asSeconds).run(http: http, duration: stopAfter, until: { sample in
                untilDrained && sample.queueDepth == 0 && sample.pending == 0 && sample.processing == 0
            }, onMiss: { elapsed, error in
                // Marked, not fatal: the server may be restarting; the next sample is taken as usual.
                say(String(format: "%6.1fs  (missed: ", elapsed) + "\(Reachability.describe(error)); sampling goes on)")
                output?.write(StatsSample.missedCSVRow(unixTime: Date().timeIntervalSince1970, elapsed: elapsed) + "\n")
            }) { sample in
                let unavailable = sample.unavailable
                say(String(format: "%6.1fs %9d %10d %8d %12d %8d %11d %10d %7d %12.2f %8d %5d", sample.elapsed, sample.visible, sample.inFlight,
                             sample.delayed, sample.deadLetter, sample.pending, sample.processing, sample.completed, sample.failed,
                             sample.processedPerSecond, sample.workers, sample.busy)
                      + "  " + String(repeating: " ", count: max(0, 9 - sample.drainETA.count)) + sample.drainETA
                      + (sample.strandedInFlight.map { stranded in
                          "  (\(stranded.count) in flight, held by no live worker: "
                              + (stranded.leasesEndInSeconds.map { "leases end in \(Int($0.rounded(.up))) s)" } ?? "they return when their leases end)")
                      } ?? "")
                      + (unavailable.isEmpty ? "" : "  (unavailable, figures stale: \(unavailable.joined(separator: ", ")))"))
                output?.write(sample.csvRow + "\n")
            }
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
        try file?.close()
    }
}

/// One line to standard output, written at once (`print` holds lines back when the output is a
/// pipe: `| tee`, a log collector).
private func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// A file written by one task at a time (the monitor's callback runs sequentially).
struct UncheckedFile: @unchecked Sendable {
    let handle: FileHandle
    func write(_ text: String) { handle.write(Data(text.utf8)) }
}
