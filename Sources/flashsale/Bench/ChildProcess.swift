import FlashCore
import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// A program `flashsale bench` starts and stops: a `flashsale serve`, nginx, wrk.
///
/// Foundation's `Process`, wrapped so that a run's servers are always stopped (SIGTERM, then
/// SIGKILL after a grace) and a short-lived tool's output can be awaited without blocking a
/// concurrency thread.
final class ChildProcess: @unchecked Sendable {
    // @unchecked: `process` is only started here and then read through Process's own locking.
    private let process = Process()
    private let output: URL
    let name: String

    /// Starts `executable` with `arguments`; standard output and error go to `output`.
    init(_ name: String, executable: String, arguments: [String], output: URL, environment: [String: String]? = nil) throws {
        self.name = name
        self.output = output
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? handle.close()
        Self.live.withLock { $0[ObjectIdentifier(self)] = self }
    }

    /// Every child still running. Foundation starts each child in a process group of its own, so
    /// a Ctrl-C at the terminal reaches the bench only: ``stopAllOnSignals(cleanup:)`` stops these.
    private static let live = Mutex<[ObjectIdentifier: ChildProcess]>([:])

    /// On SIGINT or SIGTERM: stops every running child (SIGTERM, SIGKILL after 5 s), runs
    /// `cleanup`, and exits with 128 + the signal. Keep the returned sources until the run ends.
    static func stopAllOnSignals(cleanup: @escaping @Sendable () -> Void) -> [any DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                let children = live.withLock { Array($0.values) }
                for child in children where !child.process.hasEnded { child.process.terminate() }
                let deadline = Date().addingTimeInterval(5)
                while children.contains(where: { !$0.process.hasEnded }), Date() < deadline { usleep(20_000) }
                for child in children where !child.process.hasEnded { kill(child.process.processIdentifier, SIGKILL) }
                cleanup()
                Foundation.exit(128 + number)
            }
            source.resume()
            return source
        }
    }

    /// Whether the program runs (see `Process.hasEnded`: Foundation can miss an end).
    var isRunning: Bool { !process.hasEnded }

    /// Sends `number` (SIGKILL, SIGSTOP, SIGCONT…) to the program, if it is running.
    func send(_ number: Int32) {
        if isRunning { kill(process.processIdentifier, number) }
    }

    /// Blocks until the program has exited (after a SIGKILL: at once), for 30 s at most.
    func waitUntilExit() {
        _ = process.blockUntilEnded(within: .seconds(30))
        Self.live.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(self)) }
    }

    /// What the program wrote so far.
    /// The program's process id.
    var pid: Int32 { process.processIdentifier }

    /// Its resident memory now (`VmRSS` in /proc), in bytes; nil once it ended.
    var residentBytes: Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }.map { $0 * 1024 }
        }
        return nil
    }

    var log: String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }

    /// Waits for the program to exit by itself; its exit status.
    func exit() async -> Int32 {
        while !process.hasEnded { try? await Task.sleep(for: .milliseconds(20)) }
        Self.live.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(self)) }
        return process.endStatus
    }

    /// SIGTERM, and SIGKILL when it has not exited within `grace`.
    func stop(grace: Duration = .seconds(10)) async {
        guard isRunning else { return }
        process.terminate()
        if await !process.waitForEnd(within: grace) { kill(process.processIdentifier, SIGKILL) }
        _ = await process.waitForEnd(within: .seconds(30))
        Self.live.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(self)) }
    }

    /// Runs a short-lived program to its end; its exit status and output.
    static func run(_ executable: String, _ arguments: [String], scratch: URL) async throws -> (status: Int32, output: String) {
        let log = scratch.appendingPathComponent("run-\(UUID().uuidString).log")
        defer { try? FileManager.default.removeItem(at: log) }
        let child = try ChildProcess(URL(fileURLWithPath: executable).lastPathComponent, executable: executable, arguments: arguments, output: log)
        let status = await child.exit()
        return (status, child.log)
    }

    /// The first executable called `name` on PATH, or in the usual system directories (nginx is
    /// in /usr/sbin, which a non-root PATH lacks).
    static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/usr/local/sbin", "/sbin"]
        return directories.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// A loopback port free at the moment of asking (the kernel's pick, released at once).
    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        return port
    }

    /// This program's own executable (to start `flashsale serve` children of the same build).
    static var selfExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}
