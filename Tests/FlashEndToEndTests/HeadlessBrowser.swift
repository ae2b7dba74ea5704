import AsyncHTTPClient
import FlashCore
import Foundation
import HummingbirdWSClient
import Logging
import NIOCore
import Synchronization

/// A real headless chromium, driven over the Chrome DevTools Protocol (a WebSocket): open a page,
/// evaluate JavaScript in it, resize it, take screenshots. No mock: the dashboard test watches
/// the page the way a person's browser shows it.
///
/// The browser is `$FLASHSALE_TEST_BROWSER` (the test command installs Debian's chromium and
/// sets it).
final class HeadlessBrowser: Sendable {
    static var executable: String? {
        guard let path = ProcessInfo.processInfo.environment["FLASHSALE_TEST_BROWSER"], !path.isEmpty else { return nil }
        return path
    }

    private let process: Process
    private let profile: URL
    let debuggingPort: Int

    /// Starts the browser with an empty page.
    init(executable: String) async throws {
        profile = FileManager.default.temporaryDirectory.appendingPathComponent("flashsale-chromium-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: profile, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                             "--disable-extensions", "--disable-background-networking", "--hide-scrollbars",
                             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--remote-allow-origins=*",
                             "--user-data-dir=\(profile.path)", "--window-size=1280,1000", "about:blank"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        // Chromium writes its port to DevToolsActivePort once it listens.
        let portFile = profile.appendingPathComponent("DevToolsActivePort").path
        let deadline = ContinuousClock.now + .seconds(30)
        var port: Int?
        while ContinuousClock.now < deadline, port == nil {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let line = text.split(separator: "\n").first {
                port = Int(line)
            }
            if port == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        guard let port else {
            process.terminate()
            throw ServerError("chromium did not open its DevTools port within 30 s")
        }
        debuggingPort = port
    }

    /// Runs `body` with a DevTools session on the browser's page.
    func withPage<T: Sendable>(_ http: HTTPClient, _ body: @escaping @Sendable (DevToolsSession) async throws -> T) async throws -> T {
        let list = try await http.execute(HTTPClientRequest(url: "http://127.0.0.1:\(debuggingPort)/json/list"), timeout: .seconds(10))
        let targets = try JSONValue.parse(Array(try await list.body.collect(upTo: 1 << 20).readableBytesView))
        guard case let .array(entries) = targets,
              let page = entries.first(where: { $0["type"]?.string == "page" }),
              let url = page["webSocketDebuggerUrl"]?.string
        else { throw ServerError("chromium has no page target") }
        var logger = Logger(label: "devtools")
        logger.logLevel = .warning
        let result = Mutex<Result<T, any Error>?>(nil)
        // Screenshots arrive as one large base64 text message.
        let configuration = WebSocketClientConfiguration(maxFrameSize: 64 << 20)
        _ = try await WebSocketClient.connect(url: url, configuration: configuration, logger: logger) { inbound, outbound, _ in
            let session = DevToolsSession(outbound: outbound)
            await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await message in inbound.messages(maxSize: 64 << 20) {
                        if case let .text(text) = message { session.receive(text) }
                    }
                    session.fail(ServerError("the DevTools connection closed"))
                }
                let outcome: Result<T, any Error>
                do {
                    outcome = .success(try await body(session))
                } catch {
                    outcome = .failure(error)
                }
                result.withLock { $0 = outcome }
                group.cancelAll()
            }
        }
        guard let outcome = result.withLock({ $0 }) else { throw ServerError("the DevTools session ended early") }
        return try outcome.get()
    }

    func close() {
        if !process.hasEnded {
            process.terminate()
            if !process.blockUntilEnded(within: .seconds(10)) { kill(process.processIdentifier, SIGKILL) }
        }
        try? FileManager.default.removeItem(at: profile)
    }

    deinit {
        if !process.hasEnded { kill(process.processIdentifier, SIGKILL) }
    }
}

/// One DevTools connection: commands by id, their answers matched as they arrive.
final class DevToolsSession: Sendable {
    private let outbound: WebSocketOutboundWriter
    private struct Pending {
        var next = 1
        var waiting: [Int: CheckedContinuation<JSONValue, any Error>] = [:]
        /// Commands cancelled before they were sent.
        var cancelled: Set<Int> = []
        var failed: (any Error)?
    }

    private let pending = Mutex(Pending())

    init(outbound: WebSocketOutboundWriter) {
        self.outbound = outbound
    }

    /// Sends `method` with `params` (JSON text) and returns its `result`.
    @discardableResult
    func send(_ method: String, _ params: String = "{}") async throws -> JSONValue {
        // A command the browser never answers fails the test rather than hanging it.
        try await withTimeout(.seconds(30)) { try await self.exchange(method, params) }
    }

    private func exchange(_ method: String, _ params: String) async throws -> JSONValue {
        let id = pending.withLock { state in
            defer { state.next += 1 }
            return state.next
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let refusal: (any Error)? = pending.withLock { state in
                    if let failed = state.failed { return failed }
                    if state.cancelled.remove(id) != nil { return CancellationError() }
                    state.waiting[id] = continuation
                    return nil
                }
                if let refusal {
                    continuation.resume(throwing: refusal)
                    return
                }
                let command = #"{"id":\#(id),"method":\#(JSONText.quoted(method)),"params":\#(params)}"#
                Task { [outbound] in
                    do {
                        try await outbound.write(.text(command))
                    } catch {
                        self.resolve(id, .failure(error))
                    }
                }
            }
        } onCancel: {
            let continuation = pending.withLock { state in
                let waiting = state.waiting.removeValue(forKey: id)
                if waiting == nil { state.cancelled.insert(id) }
                return waiting
            }
            continuation?.resume(throwing: CancellationError())
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    func evaluate(_ expression: String) async throws -> JSONValue {
        let result = try await send("Runtime.evaluate",
                                    #"{"expression":\#(JSONText.quoted(expression)),"returnByValue":true,"awaitPromise":true}"#)
        if let exception = result["exceptionDetails"] { throw ServerError("page script failed: \(exception)") }
        return result["result"]?["value"] ?? .null
    }

    /// The page as a PNG.
    func screenshot() async throws -> Data {
        let result = try await send("Page.captureScreenshot", #"{"format":"png","captureBeyondViewport":true}"#)
        guard let base64 = result["data"]?.string, let data = Data(base64Encoded: base64) else {
            throw ServerError("no screenshot data")
        }
        return data
    }

    func receive(_ text: String) {
        guard let message = try? JSONValue.parse(Array(text.utf8)), let id = message["id"]?.int else { return }
        if let error = message["error"] {
            resolve(id, .failure(ServerError("DevTools error: \(error)")))
        } else {
            resolve(id, .success(message["result"] ?? .null))
        }
    }

    func fail(_ error: any Error) {
        let waiting = pending.withLock { state in
            state.failed = error
            defer { state.waiting = [:] }
            return Array(state.waiting.values)
        }
        for continuation in waiting { continuation.resume(throwing: error) }
    }

    private func resolve(_ id: Int, _ result: Result<JSONValue, any Error>) {
        let continuation = pending.withLock { $0.waiting.removeValue(forKey: id) }
        continuation?.resume(with: result)
    }
}
