import AsyncHTTPClient
import FlashCore
import Foundation
import NIOCore
import NIOHTTP1

/// The chaos run's HTTP client: what a careful client of flashsale sees, and nothing more.
struct ChaosHTTP: Sendable {
    let http: HTTPClient

    /// An answer: its status and JSON body, or the transport error that replaced it.
    struct Answer: Sendable {
        var status: Int?
        var json: JSONValue?
        var error: String?

        var code: String? { json?.at(["error", "code"])?.string }
        func string(_ key: String) -> String? { json?.at([key])?.string }
        func int(_ path: String...) -> Int? { json?.at(path)?.int }
    }

    func call(_ method: HTTPMethod, _ url: String, json: String? = nil, headers: [(String, String)] = [],
              timeout: TimeAmount = .seconds(10)) async -> Answer {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        }
        do {
            let response = try await http.execute(request, timeout: timeout)
            let body = try await response.body.collect(upTo: 1 << 22)
            return Answer(status: Int(response.status.code), json: try? JSONValue.parse(body.readableBytesView))
        } catch {
            return Answer(status: nil, json: nil, error: "\(error)")
        }
    }

    func health(_ base: String) async -> Bool {
        await call(.GET, base + "/health", timeout: .seconds(2)).status == 200
    }

    /// `id` with everything but letters and digits escaped, as a careful client writes a path.
    static func escaped(_ id: String) -> String {
        id.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? id
    }
}
