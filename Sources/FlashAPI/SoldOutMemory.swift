import FlashOrders
import Synchronization

/// "Sold out", answered at the edge: a product the store just refused as sold out is refused
/// again from memory, without the writer or a database round trip, so that in a sold-out storm
/// refusals do not queue behind the sales (`flashsale bench`: the sold-out storm row).
///
/// The store stays the only judge. A product is remembered only when the store refused one
/// unit of it (so none was left), for at most ``bound``; then the next order goes to the store
/// again, which refreshes or ends it. A restock through this process forgets it at once; units
/// coming back any other way (a failed payment releasing its reservation, another process's
/// restock) are seen within ``bound``. A sale is never made from memory, so none can pass the
/// stock. Orders that may repeat an earlier one (an `Idempotency-Key`, a client's `order_id`)
/// always go to the store, which returns that order if it exists.
public final class SoldOutMemory: Sendable {
    /// How long a "sold out" from the store is repeated from memory.
    public let bound: Duration
    private struct State {
        var soldOut: [String: ContinuousClock.Instant] = [:]
        /// Bumped by every restock through this process: a refusal read before it is not remembered.
        var generation = 0
    }
    private let state = Mutex(State())

    public init(bound: Duration = .milliseconds(100)) {
        self.bound = bound
    }

    /// What a placement reads before it goes to the store (see ``remember(_:for:since:)``): the
    /// restock generation, and the time the refusal will count from.
    public var generation: (number: Int, at: ContinuousClock.Instant) { (state.withLock { $0.generation }, .now) }

    /// The refusal for `order` from memory, if one of its products was sold out within ``bound``
    /// and the order cannot be a repeat of an earlier one.
    public func refusal(for order: NewOrder) -> InventoryRefusal? {
        guard order.idempotencyKey == nil, !order.idChosenByClient else { return nil }
        let now = ContinuousClock.now
        return state.withLock { state in
            for item in order.items {
                if let since = state.soldOut[item.productID] {
                    if now - since < bound { return .soldOut(productID: item.productID) }
                    state.soldOut[item.productID] = nil
                }
            }
            return nil
        }
    }

    /// Remembers the store's refusal of `order`, asked at `generation`: a product is sold out if
    /// one unit of it in all was refused. It counts from when the store was asked, so that the
    /// time the answer took is within ``bound``.
    public func remember(_ refusal: InventoryRefusal, for order: NewOrder, since generation: (number: Int, at: ContinuousClock.Instant)) {
        guard case let .soldOut(productID) = refusal,
              order.items.filter({ $0.productID == productID }).reduce(0, { $0 + $1.quantity }) == 1 else { return }
        state.withLock { state in
            guard state.generation == generation.number else { return }
            state.soldOut[productID] = generation.at
        }
    }

    /// Forgets `productID` (restocked through this process), and every refusal read before.
    public func forget(_ productID: String) {
        state.withLock { state in
            state.generation += 1
            state.soldOut[productID] = nil
        }
    }
}
