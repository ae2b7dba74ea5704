import FlashCore

/// One line of an order's history.
public struct OrderHistoryEntry: Sendable, Hashable {
    /// Unix milliseconds.
    public var at: Int64
    /// `placed`, `attempt_started`, an ``OrderEvent/Kind`` raw value, or the final status
    /// (`completed`, `failed`).
    public var kind: String
    public var detail: String
    /// Who; nil when the store does not know (the worker that started an attempt).
    public var actor: String?

    public init(at: Int64, kind: String, detail: String, actor: String?) {
        self.at = at
        self.kind = kind
        self.detail = detail
        self.actor = actor
    }
}

extension Order {
    /// The order's history, oldest first: its row's times (placed, first attempt, finished)
    /// with the recorded events (``OrderEvent``) in between. The final line names who finished
    /// it: whoever settled it (from its ``OrderEvent/Kind/settled`` event), else the charge
    /// itself (a worker's, or the sync request's).
    public func history(with events: [OrderEvent]) -> [OrderHistoryEntry] {
        let route = switch channel {
        case .sync: "POST /orders/sync"
        case .async: "POST /orders/async"
        case .buy: "POST /buy"
        }
        let lines = items.map { "\($0.quantity) × \($0.productID)" }.joined(separator: ", ")
        var entries = [OrderHistoryEntry(at: createdAt, kind: "placed", detail: "placed through \(route): \(lines); total \(JSONText.number(total))",
                                         actor: "customer \(customerID)")]
        if let processingAt {
            entries.append(OrderHistoryEntry(at: processingAt, kind: "attempt_started",
                                             detail: channel == .sync ? "charged while the customer waited" : "the first charge attempt began",
                                             actor: nil))
        }
        let settlement = events.last { $0.kind == .settled }
        for event in events where event.kind != .settled {
            entries.append(OrderHistoryEntry(at: event.at, kind: event.kind.rawValue, detail: event.detail, actor: event.actor))
        }
        if let finishedAt, status.isTerminal {
            let detail = status == .completed ? "charged" : (failureReason ?? "failed")
            let actor = settlement?.actor ?? (channel == .sync ? "the sync request" : "a worker's charge")
            entries.append(OrderHistoryEntry(at: finishedAt, kind: status.rawValue, detail: detail, actor: actor))
        }
        // Stable: lines at the same instant keep the order above.
        return entries.enumerated().sorted { ($0.element.at, $0.offset) < ($1.element.at, $1.offset) }.map(\.element)
    }
}
