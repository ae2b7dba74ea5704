import FlashFaults
import Foundation

/// The processes of one chaos run, on fixed loopback ports so that a process killed with kill -9
/// comes back where its peers and clients expect it: a `flashsale gateway`, and the topology's
/// API and worker processes charging through it over HTTP.
final class ChaosDeployment: @unchecked Sendable {
    // @unchecked: `members` is changed only by the run's one fault loop, and read after it ends.

    /// Where an order can be sent and charged.
    enum Topology: String, CaseIterable, Sendable {
        /// One `serve` with its workers, on one SQLite file.
        case embedded
        /// One `serve --workers 0` and two `worker`s on one SQLite file.
        case fleet
        /// Two `serve --workers 0` and two `worker`s on PostgreSQL.
        case postgres
        /// One `serve --workers 0 --queue sqs` publishing its outbox to SNS, SNS delivering to
        /// SQS, and two `worker --queue sqs` reading it, on one SQLite file and a local AWS
        /// endpoint (moto).
        case sqs
    }

    /// One process of the deployment.
    final class Member: @unchecked Sendable {
        enum Kind: String, Sendable { case api, worker, gateway }
        let kind: Kind
        let name: String
        let port: Int
        let arguments: [String]
        var process: ChildProcess
        /// Stopped with SIGSTOP, until this instant.
        var pausedUntil: ContinuousClock.Instant?

        init(kind: Kind, name: String, port: Int, arguments: [String], process: ChildProcess) {
            self.kind = kind
            self.name = name
            self.port = port
            self.arguments = arguments
            self.process = process
        }

        var baseURL: String { "http://127.0.0.1:\(port)" }
    }

    let topology: Topology
    let directory: URL
    /// The PostgreSQL cluster the postgres topology runs on, when the run may restart and pause
    /// it: a data directory as `scripts/postgres-server` makes (`DIR/data`, and `DIR/bin` naming
    /// the server's programs).
    let postgresDirectory: URL?
    /// The cluster's processes, stopped with SIGSTOP until this instant.
    private(set) var postgresPaused: (pids: [Int32], until: ContinuousClock.Instant)?
    private(set) var members: [Member] = []
    /// The lease of a delivered message: a worker paused longer than this loses its deliveries.
    static let lease: Duration = .seconds(2)

    /// A network path from the deployment's processes to a server (the gateway, PostgreSQL),
    /// through a proxy the run can break.
    final class Link: @unchecked Sendable {
        // @unchecked: `brokenUntil` is changed only by the run's one fault loop.
        let name: String
        let proxy: TCPProxy
        /// Broken (connections cut and refused, or stalled) until this instant.
        var brokenUntil: ContinuousClock.Instant?

        init(name: String, proxy: TCPProxy) {
            self.name = name
            self.proxy = proxy
        }
    }

    /// The links by server: "gateway" always, "PostgreSQL" on the postgres topology.
    private(set) var links: [String: Link] = [:]

    var apis: [Member] { members.filter { $0.kind == .api } }
    var gateway: Member { members.first { $0.kind == .gateway }! }

    /// Credentials for a local AWS endpoint, which checks none, unless the environment has its own.
    static let localAWSEnvironment = ["AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                                      "AWS_EC2_METADATA_DISABLED": "true"]

    init(topology: Topology, directory: URL, database: String?, postgresDirectory: URL?, aws: String? = nil) async throws {
        self.topology = topology
        self.directory = directory
        self.postgresDirectory = topology == .postgres ? postgresDirectory : nil
        let gatewayPort = try await ChildProcess.freePort()
        try start(.gateway, "gateway", port: gatewayPort, command: "gateway",
                  arguments: ["--data", directory.appendingPathComponent("gateway.db").path, "--latency", "20ms..60ms"])
        // Every process reaches the gateway and the database through a link the run can break.
        let gatewayLink = Link(name: "gateway", proxy: try await TCPProxy(forwardingTo: "127.0.0.1", port: gatewayPort))
        links["gateway"] = gatewayLink
        var shared = ["--payment-url", "http://127.0.0.1:\(gatewayLink.proxy.port)", "--visibility-timeout", Self.lease.shortDescription,
                      "--reconcile-interval", "500ms", "--retry-backoff", "100ms"]
        let api = ["--sync-timeout", "2s", "--sync-lanes", "4", "--flash-product", ChaosRun.flashProduct]
        if let database {
            guard var url = URLComponents(string: database), let host = url.host else { throw ChaosError("--database is not a URL") }
            let link = Link(name: "PostgreSQL", proxy: try await TCPProxy(forwardingTo: host, port: url.port ?? 5432))
            links["PostgreSQL"] = link
            url.host = "127.0.0.1"
            url.port = link.proxy.port
            shared += ["--database", url.string ?? database]
        } else {
            shared += ["--data", directory.appendingPathComponent("flashsale.db").path]
        }
        var apiOnly: [String] = []
        if topology == .sqs {
            guard let aws, let endpoint = URLComponents(string: aws), let host = endpoint.host else { throw ChaosError("the sqs topology needs --aws-endpoint") }
            let link = Link(name: "AWS", proxy: try await TCPProxy(forwardingTo: host, port: endpoint.port ?? 80))
            links["AWS"] = link
            let (queueURL, topicARN) = try await Self.setUpAWS(aws, directory: directory)
            shared += ["--queue", "sqs", "--aws-endpoint", "http://127.0.0.1:\(link.proxy.port)", "--queue-url", queueURL]
            apiOnly = ["--topic-arn", topicARN]
        }
        switch topology {
        case .embedded:
            try start(.api, "api", port: try await ChildProcess.freePort(), command: "serve", arguments: shared + api + ["--workers", "8"])
        case .fleet, .postgres, .sqs:
            let apiCount = topology == .postgres ? 2 : 1
            for n in 1...apiCount {
                try start(.api, "api\(n)", port: try await ChildProcess.freePort(), command: "serve",
                          arguments: shared + api + apiOnly + ["--workers", "0"])
            }
            for n in 1...2 {
                try start(.worker, "worker\(n)", port: try await ChildProcess.freePort(), command: "worker", arguments: shared + ["--workers", "6"])
            }
        }
    }

    private func start(_ kind: Member.Kind, _ name: String, port: Int, command: String, arguments: [String]) throws {
        let full = [command, "--port", "\(port)", "--log-level", "warning"] + arguments
        let process = try Self.launch(name, full, directory: directory)
        members.append(Member(kind: kind, name: name, port: port, arguments: full, process: process))
    }

    private static func launch(_ name: String, _ arguments: [String], directory: URL) throws -> ChildProcess {
        try ChildProcess(name, executable: ChildProcess.selfExecutable, arguments: arguments,
                         output: directory.appendingPathComponent("\(name)-\(UUID().uuidString.prefix(6)).log"),
                         environment: environment)
    }

    /// The children's environment: this one's without FLASHSALE_… settings, with credentials
    /// for a local AWS endpoint where none are given, and the run's admin secret.
    private static var environment: [String: String] {
        var environment = localAWSEnvironment.merging(ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FLASHSALE_") }) { _, own in own }
        environment["FLASHSALE_ADMIN_TOKEN"] = adminToken
        environment["FLASHSALE_GATEWAY_TOKEN"] = gatewayToken
        return environment
    }

    /// The admin secret of the run's API processes.
    static let adminToken = UUID().uuidString + UUID().uuidString
    /// The secret of the run's payment gateway, which its API and worker processes send.
    static let gatewayToken = UUID().uuidString + UUID().uuidString

    /// `flashsale setup-aws` on the endpoint, with names of this run's own: the queue's URL and
    /// the topic's ARN. The queue's lease is the run's, and a message is dead-lettered after 5
    /// receives.
    private static func setUpAWS(_ endpoint: String, directory: URL) async throws -> (queueURL: String, topicARN: String) {
        let output = directory.appendingPathComponent("setup-aws.json").path
        let log = directory.appendingPathComponent("setup-aws.log").path
        let prefix = "chaos" + UUID().uuidString.prefix(8).lowercased()
        let status = await runToEnd(ChildProcess.selfExecutable, ["setup-aws", "--aws-endpoint", endpoint, "--prefix", prefix, "--max-receives", "5",
                                                                  "--visibility-timeout", lease.shortDescription, "--json"],
                                    log: log, output: output, environment: environment)
        guard status == 0, let data = FileManager.default.contents(atPath: output),
              let made = try? JSONSerialization.jsonObject(with: data) as? [String: String],
              let queueURL = made["queue_url"], let topicARN = made["topic_arn"]
        else {
            throw ChaosError("setup-aws on \(endpoint) failed (\(status)): \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        return (queueURL, topicARN)
    }

    /// kill -9, then the same process again on the same port.
    func killAndRestart(_ member: Member) throws {
        member.process.send(SIGCONT)
        member.process.send(SIGKILL)
        member.process.waitUntilExit()
        member.pausedUntil = nil
        member.process = try Self.launch(member.name, member.arguments, directory: directory)
    }

    /// SIGSTOP for `duration`; ``resumeDue()`` sends SIGCONT.
    func pause(_ member: Member, for duration: Duration) {
        member.process.send(SIGSTOP)
        member.pausedUntil = .now + duration
    }

    /// `pg_ctl restart -m fast`: every connection is cut, the server is away for a moment.
    func restartPostgres() async throws {
        guard let directory = postgresDirectory else { return }
        let bin = try String(contentsOf: directory.appendingPathComponent("bin"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let pgCtl = [bin + "/pg_ctl", "-D", directory.appendingPathComponent("data").path, "-l",
                     directory.appendingPathComponent("server.log").path, "-w", "-t", "60", "-m", "fast", "restart"]
        // The server refuses to run as root: as its owner then, as scripts/postgres-server does.
        let (executable, arguments) = getuid() == 0 ? ("/usr/sbin/runuser", ["-u", "postgres", "--"] + pgCtl) : (pgCtl[0], Array(pgCtl.dropFirst()))
        let log = self.directory.appendingPathComponent("pg_ctl.log").path
        let status = await Self.runToEnd(executable, arguments, log: log)
        guard status == 0 else {
            throw ChaosError("restarting PostgreSQL failed (\(status)): \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
    }

    /// Runs a program to its end on a thread of its own; its exit status (-1 if it could not
    /// start or was killed). Not Foundation's `Process`: `pg_ctl` leaves the server behind as a
    /// daemon, and `Process` then never reported the end of the `runuser` that started it.
    private static func runToEnd(_ executable: String, _ arguments: [String], log: String, output: String? = nil,
                                 environment: [String: String]? = nil) async -> Int32 {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var actions = posix_spawn_file_actions_t()
                posix_spawn_file_actions_init(&actions)
                defer { posix_spawn_file_actions_destroy(&actions) }
                posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
                posix_spawn_file_actions_addopen(&actions, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
                if let output {
                    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                } else {
                    posix_spawn_file_actions_adddup2(&actions, 2, 1)
                }
                let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
                defer { argv.forEach { free($0) } }
                let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
                defer { envp?.forEach { free($0) } }
                var pid: pid_t = 0
                let spawned = envp.map { posix_spawn(&pid, executable, &actions, nil, argv, $0) } ?? posix_spawn(&pid, executable, &actions, nil, argv, environ)
                guard spawned == 0 else {
                    continuation.resume(returning: -1)
                    return
                }
                var status: Int32 = 0
                while waitpid(pid, &status, 0) == -1, errno == EINTR {}
                // Exited normally: the low 7 bits are 0 and the exit code is the next byte.
                continuation.resume(returning: status & 0x7F == 0 ? (status >> 8) & 0xFF : -1)
            }
        }
    }

    /// SIGSTOP to the PostgreSQL server and every backend of it for `duration`: connections stay
    /// open and nothing answers (a stalled disk, a VM paused).
    func pausePostgres(for duration: Duration) throws {
        guard let directory = postgresDirectory else { return }
        let pidFile = try String(contentsOf: directory.appendingPathComponent("data/postmaster.pid"), encoding: .utf8)
        guard let postmaster = pidFile.split(separator: "\n").first.flatMap({ Int32($0) }) else { throw ChaosError("no postmaster.pid") }
        let children = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry -> Int32? in
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            // Fields after the command: state, then the parent's pid.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == postmaster ? pid : nil
        }
        let pids = [postmaster] + children
        for pid in pids { kill(pid, SIGSTOP) }
        postgresPaused = (pids, .now + duration)
    }

    /// Breaks a link for `duration`: `.refusing` cuts its connections and refuses new ones (a
    /// partition that resets), `.stalled` holds every byte (one that drops packets); either way
    /// the processes on both ends keep running. ``resumeDue()`` heals it.
    func breakLink(_ link: Link, _ mode: TCPProxy.Mode, for duration: Duration) {
        link.proxy.mode = mode
        link.brokenUntil = .now + duration
    }

    /// Forwards every link until the task is cancelled.
    func runLinks() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            for link in links.values { group.addTask { try await link.proxy.run() } }
        }
    }

    /// SIGCONT to every member whose pause is over, and heals every link whose break is (all of
    /// them with `all`).
    func resumeDue(all: Bool = false) {
        for link in links.values {
            if let until = link.brokenUntil, all || until <= .now {
                link.proxy.mode = .passing
                link.brokenUntil = nil
            }
        }
        if let paused = postgresPaused, all || paused.until <= .now {
            for pid in paused.pids { kill(pid, SIGCONT) }
            postgresPaused = nil
        }
        for member in members {
            if let until = member.pausedUntil, all || until <= .now {
                member.process.send(SIGCONT)
                member.pausedUntil = nil
            }
        }
    }

    /// Restarts any member that exited by itself (a crash the run did not cause is reported).
    func restartExited() throws -> [String] {
        var crashed: [String] = []
        for member in members where !member.process.isRunning {
            crashed.append(member.name)
            member.process = try Self.launch(member.name, member.arguments, directory: directory)
        }
        return crashed
    }

    /// Waits until every member answers `GET /health` (a process restarted a moment ago).
    func waitUntilAnswering(_ client: ChaosHTTP, within limit: Duration) async throws {
        let deadline = ContinuousClock.now + limit
        for member in members {
            while await client.health(member.baseURL) == false {
                guard ContinuousClock.now < deadline else {
                    throw ChaosError("\(member.name) does not answer on port \(member.port):\n\(member.process.log.suffix(2000))")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    func stopAll() async {
        resumeDue(all: true)
        for member in members.reversed() { await member.process.stop(grace: .seconds(10)) }
    }
}

struct ChaosError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
