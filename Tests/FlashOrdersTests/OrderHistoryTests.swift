import FlashOrders
import Testing

@Suite("An order's history")
struct OrderHistoryTests {
    static func order(_ channel: OrderChannel, status: OrderStatus, attempts: Int, reason: String? = nil,
                      processingAt: Int64? = 20, finishedAt: Int64? = nil) -> Order {
        Order(id: "o1", customerID: "c9", items: [OrderItem(productID: "PS5", quantity: 2, price: 10)], total: 20, status: status,
              channel: channel, attempts: attempts, failureReason: reason, createdAt: 10, updatedAt: 10,
              processingAt: processingAt, finishedAt: finishedAt, messageID: nil)
    }

    @Test func aChargeThatWorkedIsPlacedStartedAndFinishedByItsCharge() {
        let sync = Self.order(.sync, status: .completed, attempts: 1, finishedAt: 30).history(with: [])
        #expect(sync.map(\.kind) == ["placed", "attempt_started", "completed"])
        #expect(sync[0].detail == "placed through POST /orders/sync: 2 × PS5; total 20" && sync[0].actor == "customer c9")
        #expect(sync[1].detail == "charged while the customer waited" && sync[1].actor == nil)
        #expect(sync[2].detail == "charged" && sync[2].actor == "the sync request" && sync[2].at == 30)
        let queued = Self.order(.async, status: .failed, attempts: 1, reason: "payment declined: card", finishedAt: 30).history(with: [])
        #expect(queued.last?.detail == "payment declined: card" && queued.last?.actor == "a worker's charge")
    }

    @Test func eventsFallBetweenInTimeAndWhoeverSettledFinishesIt() {
        let events = [
            OrderEvent(orderID: "o1", at: 25, kind: .attemptFailed, detail: "attempt 1 failed: timeout", actor: "w1"),
            OrderEvent(orderID: "o1", at: 40, kind: .deadLettered, detail: "dead-lettered after 2 attempts", actor: "r"),
            OrderEvent(orderID: "o1", at: 50, kind: .redriven, detail: "sent back", actor: "an operator"),
            OrderEvent(orderID: "o1", at: 61, kind: .settled, detail: "failed: voided", actor: "an operator (x)"),
        ]
        let history = Self.order(.async, status: .failed, attempts: 3, reason: "voided", finishedAt: 60).history(with: events.reversed())
        #expect(history.map(\.kind) == ["placed", "attempt_started", "attempt_failed", "dead_lettered", "redriven", "failed"])
        #expect(history.last?.actor == "an operator (x)" && history.last?.detail == "voided")
        // Open: no final line, and no first attempt before it began.
        let pending = Self.order(.buy, status: .pending, attempts: 0, processingAt: nil).history(with: [])
        #expect(pending.map(\.kind) == ["placed"] && pending[0].detail.hasPrefix("placed through POST /buy"))
    }
}
