import Hummingbird

/// Registers routes and answers 405 (with `Allow`) for a known path asked with another method,
/// which Hummingbird's router would answer 404.
struct RouteTable<Context: RequestContext> {
    let router: Router<Context>
    /// The group behind the admin check.
    let admin: RouterGroup<Context>
    private var methodsByPath: [(path: RouterPath, methods: [HTTPRequest.Method])] = []

    init(router: Router<Context>, admin: RouterGroup<Context>) {
        self.router = router
        self.admin = admin
    }

    /// Adds a route; an `admin` one goes in the group behind ``AdminMiddleware``.
    mutating func on(_ path: RouterPath, method: HTTPRequest.Method, admin isAdmin: Bool = false,
                     use handler: @escaping @Sendable (Request, Context) async throws -> Response) {
        if isAdmin {
            admin.on(path, method: method, use: handler)
        } else {
            router.on(path, method: method, use: handler)
        }
        if let index = methodsByPath.firstIndex(where: { $0.path.description == path.description }) {
            methodsByPath[index].methods.append(method)
        } else {
            methodsByPath.append((path, [method]))
        }
    }

    /// Every route registered: method and path template (`GET /orders/{id}`).
    var registered: [String] {
        methodsByPath.flatMap { entry -> [String] in
            let segments = entry.path.description.split(separator: "/").map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }
            let template = "/" + segments.joined(separator: "/")
            return entry.methods.map { "\($0.rawValue) \(template)" }
        }
    }

    /// Adds the 405 answers; call after every route is registered.
    func finish() {
        // HEAD is not served (a route answers GET only), so it is answered 405 like the others.
        let all: [HTTPRequest.Method] = [.get, .head, .post, .put, .delete, .patch]
        for (path, methods) in methodsByPath {
            let allow = methods.map(\.rawValue).joined(separator: ", ")
            for method in all where !methods.contains(method) {
                router.on(path, method: method) { request, _ -> Response in
                    throw APIError(.methodNotAllowed, code: "method_not_allowed",
                                   message: "\(request.method) is not allowed on \(request.uri.path); use \(allow)",
                                   headers: [.allow: allow])
                }
            }
        }
    }
}

