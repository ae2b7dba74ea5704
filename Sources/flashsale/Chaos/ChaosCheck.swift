import Foundation

/// What a chaos run found, checked from outside only: the clients' answers, the orders the API
/// shows (`GET /orders/{id}`, `/products/{id}`, `/stats`) and the gateway's ledger
/// (`GET /charges/{id}`, `/stats`).
struct ChaosSummary: Codable, Sendable {
    var topology: String
    var faults: [String: Int] = [:]
    var attempts = 0
    var acknowledged = 0
    var notAcknowledged = 0
    var refused = 0
    var toldNotCharged = 0
    var unresolved = 0
    var completed = 0
    var failed = 0
    var deadLetters = 0
    /// Processes that exited although no fault killed them.
    var crashed: [String] = []

    // The violations: each must be 0.
    /// Acknowledged, and the API does not know the order.
    var lost = 0
    /// Told 503 `unavailable` or `overloaded` (or refused with 4xx), with no other answer, yet the order exists.
    var presentAfterRefusal = 0
    /// More charges in the gateway's ledger than orders whose charge succeeded.
    var chargedTwice = 0
    var completedWithoutCharge = 0
    var failedWithCharge = 0
    /// A sync order answered 504 "nothing was charged" that was charged all the same.
    var chargedAfterNotCharged = 0
    /// Still pending or processing after everything settled.
    var stuck = 0
    /// Units sold beyond a product's stock, or sold to no order the clients know.
    var oversold = 0
    /// stock + reserved + sold differs from what was stocked.
    var stockNotConserved = 0
    /// Examples of each violation (order ids), for the history.
    var examples: [String: [String]] = [:]

    var violations: Int {
        lost + presentAfterRefusal + chargedTwice + completedWithoutCharge + failedWithCharge + chargedAfterNotCharged + stuck + oversold + stockNotConserved
            + crashed.count
    }

    mutating func violation(_ kind: WritableKeyPath<ChaosSummary, Int>, _ name: String, _ example: String) {
        self[keyPath: kind] += 1
        if examples[name, default: []].count < 5 { examples[name, default: []].append(example) }
    }

    /// The summary as a Markdown table.
    var table: String {
        let rows: [(String, String)] = [
            ("faults", faults.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")),
            ("attempts", "\(attempts)"), ("acknowledged", "\(acknowledged)"), ("not acknowledged (503)", "\(notAcknowledged)"),
            ("refused (4xx)", "\(refused)"), ("sync 504 'nothing was charged'", "\(toldNotCharged)"), ("unresolved (no answer after retries)", "\(unresolved)"),
            ("completed", "\(completed)"), ("failed", "\(failed)"), ("dead letters", "\(deadLetters)"),
            ("**lost**", "\(lost)"), ("**present after a refusal**", "\(presentAfterRefusal)"), ("**charged twice**", "\(chargedTwice)"),
            ("**completed without a charge**", "\(completedWithoutCharge)"), ("**failed with a charge**", "\(failedWithCharge)"),
            ("**charged after a 504 'nothing was charged'**", "\(chargedAfterNotCharged)"),
            ("**stuck**", "\(stuck)"), ("**oversold**", "\(oversold)"), ("**stock not conserved**", "\(stockNotConserved)"),
            ("**crashed by themselves**", crashed.isEmpty ? "0" : crashed.joined(separator: ", ")),
        ]
        var text = "| \(topology) | |\n|---|---|\n"
        for (name, value) in rows { text += "| \(name) | \(value) |\n" }
        return text
    }
}

/// Settles and checks a chaos run's outcome.
struct ChaosCheck {
    let deployment: ChaosDeployment
    let http: ChaosHTTP

    /// Waits until no order is pending or processing (every fault has healed, and the
    /// reconciler has settled what it must), or `limit` passes.
    func settle(within limit: Duration) async -> Bool {
        let api = deployment.apis[0].baseURL
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            let stats = await http.call(.GET, api + "/stats")
            if let pending = stats.int("orders", "pending"), let processing = stats.int("orders", "processing"), pending + processing == 0 {
                return true
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
        return false
    }

    func check(_ intents: [ChaosIntent], into summary: inout ChaosSummary) async throws {
        let flashProduct = ChaosRun.flashProduct
        let api = deployment.apis[0].baseURL
        let gateway = deployment.gateway.baseURL
        summary.acknowledged = intents.count { $0.acknowledged }
        summary.notAcknowledged = intents.count { !$0.acknowledged && $0.notAcknowledged }
        summary.refused = intents.count { $0.refused }
        summary.toldNotCharged = intents.count { $0.toldNotCharged }
        summary.unresolved = intents.count { !$0.acknowledged && !$0.refused && !$0.toldNotCharged && $0.unresolved }

        // Each order the clients can name, as the API and the gateway see it (16 at a time).
        let named = intents.filter { $0.orderID != nil }
        struct Looked: Sendable {
            var intent: ChaosIntent
            var order: ChaosHTTP.Answer
            var charge: ChaosHTTP.Answer
        }
        let looked = try await withThrowingTaskGroup(of: Looked.self) { group -> [Looked] in
            var next = 0
            func addNext() {
                guard next < named.count else { return }
                let intent = named[next]
                next += 1
                group.addTask {
                    let id = ChaosHTTP.escaped(intent.orderID!)
                    var order = await http.call(.GET, api + "/orders/\(id)")
                    let bearer = [("Authorization", "Bearer \(ChaosDeployment.gatewayToken)")]
                    var charge = await http.call(.GET, gateway + "/charges/\(id)", headers: bearer)
                    // A look-up that got no answer (a busy loopback, a pool at its limit) is asked again.
                    for _ in 0..<10 {
                        guard order.status == nil || charge.status == nil else { break }
                        try await Task.sleep(for: .seconds(1))
                        if order.status == nil { order = await http.call(.GET, api + "/orders/\(id)") }
                        if charge.status == nil { charge = await http.call(.GET, gateway + "/charges/\(id)", headers: bearer) }
                    }
                    guard order.status == 200 || order.status == 404, charge.status == 200 || charge.status == 404 else {
                        throw ChaosError("cannot check order \(intent.orderID!): API \(order.status.map(String.init) ?? order.error ?? "?"), "
                            + "gateway \(charge.status.map(String.init) ?? charge.error ?? "?")")
                    }
                    return Looked(intent: intent, order: order, charge: charge)
                }
            }
            for _ in 0..<16 { addNext() }
            var all: [Looked] = []
            while let one = try await group.next() {
                all.append(one)
                addNext()
            }
            return all
        }
        var succeeded = 0
        var completedByProduct: [String: Int] = [:]
        for one in looked {
            let (intent, order, charge) = (one.intent, one.order, one.charge)
            let id = intent.orderID!
            let status = order.status == 200 ? order.string("status") : nil
            let charged = charge.status == 200 && charge.string("status") == "succeeded"
            if charged { succeeded += 1 }
            switch status {
            case nil:
                if intent.acknowledged { summary.violation(\.lost, "lost", id) }
            case "completed":
                summary.completed += 1
                completedByProduct[intent.operation == .buy ? flashProduct : ChaosRun.product, default: 0] += 1
                if !charged { summary.violation(\.completedWithoutCharge, "completed without a charge", id) }
            case "failed":
                summary.failed += 1
                if charged { summary.violation(\.failedWithCharge, "failed with a charge", id) }
            default:
                summary.violation(\.stuck, "stuck", "\(id) (\(status!))")
            }
            if intent.toldNotCharged, charged || status == "completed" {
                summary.violation(\.chargedAfterNotCharged, "charged after 'nothing was charged'", id)
            }
            if status != nil, !intent.acknowledged, !intent.unresolved, intent.notAcknowledged || intent.refused {
                summary.violation(\.presentAfterRefusal, "present after a refusal", id)
            }
        }

        // Charges beyond the orders charged: a /buy whose answer never came may have been
        // placed and charged without the clients knowing its id; those are allowed.
        let unnamedBuys = intents.count { $0.operation == .buy && $0.orderID == nil && $0.unresolved }
        let gatewayStats = await http.call(.GET, gateway + "/stats")
        if let charges = gatewayStats.int("charges"), charges > succeeded + unnamedBuys {
            summary.violation(\.chargedTwice, "charged twice", "gateway charges \(charges), orders charged \(succeeded)")
        }

        // Units: conserved, never beyond stock, and sold only to orders that completed.
        for (product, stocked, slack) in [(ChaosRun.product, ChaosRun.productStock, 0), (flashProduct, ChaosRun.flashStock, unnamedBuys)] {
            let answer = await http.call(.GET, api + "/products/\(product)")
            guard let stock = answer.int("stock"), let reserved = answer.int("reserved"), let sold = answer.int("sold") else {
                throw ChaosError("cannot read product \(product): \(answer)")
            }
            if stock + reserved + sold != stocked {
                summary.violation(\.stockNotConserved, "stock not conserved", "\(product): \(stock)+\(reserved)+\(sold) ≠ \(stocked)")
            }
            let known = completedByProduct[product, default: 0]
            if sold > stocked || sold < known || sold > known + slack {
                summary.violation(\.oversold, "oversold", "\(product): sold \(sold), stock \(stocked), completed orders \(known)")
            }
        }
        summary.deadLetters = await http.call(.GET, api + "/stats").int("queue", "dead_letter") ?? -1
    }
}
