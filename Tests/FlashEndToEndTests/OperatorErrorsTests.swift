import AsyncHTTPClient
import FlashCore
import Foundation
import Testing

/// What an operator sees in the first hour when something is wrong, run through the real binary:
/// every error names the thing (the flag as given, the path, the port, the URL) and says what to
/// do, before anything is created, and the command exits non-zero.
@Suite("Errors that name the thing", .serialized)
struct OperatorErrorsTests {
    static func directory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flashsale-errors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    @Test func aPortInUseIsNamedBeforeTheDatabaseIsCreated() async throws {
        let first = try await ServerProcess(dataPath: ServerProcess.temporaryDataPath(), arguments: ["--workers", "0"])
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let data = directory.appendingPathComponent("second.db").path
        let run = try await ServerProcess.runCommand(["serve", "--port", "\(first.port)", "--data", data], within: .seconds(120))
        #expect(run.status != 0)
        #expect(run.errors.contains("port \(first.port) on 127.0.0.1 is already in use"), "\(run.errors)")
        #expect(run.errors.contains("--port 0"), "\(run.errors)")
        #expect(run.errors.contains("flashsale serve"), "\(run.errors)")
        #expect(!FileManager.default.fileExists(atPath: data), "the database was created before the port was checked")
        #expect(!run.output.contains("worker pool started") && !run.errors.contains("worker pool started"))
        _ = try await first.terminate()
    }

    @Test func aMissingDirectoryOrAFileThatIsNoDatabaseIsNamed() async throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let missing = directory.appendingPathComponent("no/such/dir/x.db").path
        let absent = try await ServerProcess.runCommand(["serve", "--port", "0", "--data", missing], within: .seconds(120))
        #expect(absent.status != 0)
        #expect(absent.errors.contains("--data \(missing): the directory \(directory.path)/no/such/dir does not exist"), "\(absent.errors)")
        #expect(absent.errors.contains("mkdir -p"))

        let text = directory.appendingPathComponent("notes.txt").path
        try Data("hello, this is not SQLite\n".utf8).write(to: URL(fileURLWithPath: text))
        let wrong = try await ServerProcess.runCommand(["serve", "--port", "0", "--data", text], within: .seconds(120))
        #expect(wrong.status != 0)
        #expect(wrong.errors.contains("\(text) is not a flashsale database"), "\(wrong.errors)")
        #expect(!wrong.errors.contains("SQLite error 26"), "\(wrong.errors)")
        // Nothing was written into the user's file.
        #expect(try String(contentsOfFile: text, encoding: .utf8) == "hello, this is not SQLite\n")
    }

    @Test func aDurationWithoutAUnitIsRefusedShowingTheForms() throws {
        for (flag, value) in [("--payment-latency", "200"), ("--sync-timeout", "5"), ("--visibility-timeout", "30")] {
            let run = try ServerProcess.runToExit([flag, value])
            #expect(run.status != 0, "\(flag) \(value) started")
            #expect(run.errors.contains("Error: \(flag)"), "\(run.errors)")
            #expect(run.errors.contains("'\(value)'") && run.errors.contains("ms"), "\(run.errors)")
            #expect(run.errors.contains("Usage: flashsale serve"), "\(run.errors)")
        }
        // 0 needs no unit, and a unit is accepted everywhere.
        #expect(Duration(parsing: "0") == .zero)
        #expect(Duration(parsing: "200ms") == .milliseconds(200))
    }

    @Test func theFlagGivenIsNamedNotItsVariableWithTheRightCommand() throws {
        let rate = try ServerProcess.runToExit(["--payment-decline-rate", "5"])
        #expect(rate.status != 0)
        #expect(rate.errors.contains("Error: --payment-decline-rate must be a number in 0.0...1.0, not '5'"), "\(rate.errors)")
        #expect(!rate.errors.contains("FLASHSALE_PAYMENT_DECLINE_RATE"), "\(rate.errors)")
        #expect(rate.errors.contains("Usage: flashsale serve"), "\(rate.errors)")
        #expect(!rate.errors.contains("flashsale <subcommand>"), "\(rate.errors)")

        let workers = try ServerProcess.runToExit(["--workers", "-1"])
        #expect(workers.status != 0)
        #expect(workers.errors.contains("--workers is out of range: -1 is not in 0...100000"), "\(workers.errors)")
        #expect(!workers.errors.contains("Missing value"), "\(workers.errors)")
    }

    @Test func aVariableThatIsWrongIsNamedAsTheVariable() async throws {
        let run = try await ServerProcess.runCommand(["serve", "--port", "0", "--data", ServerProcess.temporaryDataPath()], within: .seconds(120),
                                                     environment: ["FLASHSALE_PAYMENT_DECLINE_RATE": "5"])
        #expect(run.status != 0)
        #expect(run.errors.contains("FLASHSALE_PAYMENT_DECLINE_RATE (from the environment)"), "\(run.errors)")
    }

    @Test func versionAndTheLinksOfTheRoot() async throws {
        let version = try await ServerProcess.runCommand(["--version"], within: .seconds(60))
        #expect(version.status == 0)
        #expect(version.output.trimmingCharacters(in: .whitespacesAndNewlines) == FlashVersion.current)

        let server = try await ServerProcess(dataPath: ServerProcess.temporaryDataPath(), arguments: ["--workers", "0"])
        // The start-up line names the dashboard.
        #expect(server.log.contains("listening on http://127.0.0.1:\(server.port); dashboard http://127.0.0.1:\(server.port)/dashboard"), "\(server.log)")
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let client = APIClient(http: http, base: server.baseURL)
            let root = try await client.call(.GET, "/", authorized: false)
            #expect(root.status == 200)
            #expect(root.string("version") == FlashVersion.current)
            for (name, path) in [("dashboard", "/dashboard"), ("openapi", "/openapi.json"), ("metrics", "/metrics")] {
                #expect(root.string("links", name) == path)
                #expect(try await client.call(.GET, path, authorized: false).status == 200, "\(path)")
            }
            let page = try await http.execute(HTTPClientRequest(url: server.baseURL + "/").withAccept("text/html"), timeout: .seconds(30))
            let html = String(buffer: try await page.body.collect(upTo: 1 << 20))
            #expect(page.headers["content-type"].first?.hasPrefix("text/html") == true)
            #expect(html.contains(#"<a href="/dashboard">"#) && html.contains(#"<a href="/openapi.json">"#) && html.contains(#"<a href="/metrics">"#))
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
        _ = try await server.terminate()
    }

    @Test func theStartUpLineSaysWhereChargesGo() async throws {
        let gatewayPort = try await ChildPort.free()
        let server = try await ServerProcess(dataPath: ServerProcess.temporaryDataPath(),
                                             arguments: ["--workers", "1", "--payment-url", "http://127.0.0.1:\(gatewayPort)", "--log-level", "info"],
                                             environment: ["FLASHSALE_GATEWAY_TOKEN": "a-gateway-secret"])
        let start = try #require(server.log.split(separator: "\n").first { $0.contains("flashsale starting") }, "\(server.log)")
        #expect(start.contains("payment=http http://127.0.0.1:\(gatewayPort)"), "\(start)")
        #expect(!start.contains("payment_latency"), "\(start)")
        _ = try await server.terminate()
    }

    @Test func toolsAgainstAnAddressWhereNothingListensNameItAndExitNonZero() async throws {
        let port = try await ChildPort.free()
        let url = "http://127.0.0.1:\(port)"
        let load = try await ServerProcess.runCommand(["load", "--host", url, "--duration", "30s", "--connect-wait", "2s"], within: .seconds(120))
        #expect(load.status != 0)
        #expect(load.errors.contains("nothing answers at \(url)/"), "\(load.errors)")
        #expect(!load.output.contains("Aggregated"), "load ran its requests anyway: \(load.output)")

        let bare = try await ServerProcess.runCommand(["load", "--host", "127.0.0.1:\(port)"], within: .seconds(60))
        #expect(bare.status != 0)
        #expect(bare.errors.contains("did you mean http://127.0.0.1:\(port)?"), "\(bare.errors)")

        let aws = try await ServerProcess.runCommand(["setup-aws", "--region", "us-east-1", "--aws-endpoint", url], within: .seconds(120),
                                                     environment: ["AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"])
        #expect(aws.status != 0)
        #expect(aws.errors.contains("waiting for the AWS endpoint \(url)"), "\(aws.errors)")
        #expect(aws.errors.contains("nothing answers at \(url)"), "\(aws.errors)")

        let monitor = try await ServerProcess.runCommand(["monitor", "--url", url, "--wait", "2s"], within: .seconds(120))
        #expect(monitor.status != 0)
        #expect(monitor.errors.contains("waiting for \(url)/stats: connection refused"), "\(monitor.errors)")
    }
}

extension HTTPClientRequest {
    /// The request with an `Accept` header.
    func withAccept(_ value: String) -> HTTPClientRequest {
        var request = self
        request.headers.replaceOrAdd(name: "Accept", value: value)
        return request
    }
}
