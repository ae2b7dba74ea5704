import FlashCore
import Foundation

/// The fleet-wide switch that pauses consuming a queue (River UI's and Sidekiq's pause): while
/// it is on, no worker of any process takes a new delivery; charges in progress finish, and
/// deliveries already received but not started go back to the queue untried. Orders keep being
/// accepted and wait in the queue. Kept in the fleet registry's values, so every process of the
/// fleet (any backend, SQS included) reads the same switch.
public struct QueuePause: Sendable {
    /// The switch of one queue as stored: who set it, and when.
    public struct State: Sendable, Hashable, Codable {
        public var paused: Bool
        /// Who paused or resumed it (the admin request's address and request id).
        public var by: String?
        /// When it was set (Unix ms).
        public var at: Int64?

        public init(paused: Bool, by: String? = nil, at: Int64? = nil) {
            self.paused = paused
            self.by = by
            self.at = at
        }
    }

    let registry: any FleetRegistry

    public init(registry: any FleetRegistry) {
        self.registry = registry
    }

    static func valueName(_ queue: String) -> String { "queue-paused:" + queue }

    /// The queue's switch; not paused when never set.
    public func state(of queue: String) async throws -> State {
        guard let text = try await registry.value(named: Self.valueName(queue)),
              let state = try? JSONDecoder().decode(State.self, from: Data(text.utf8)) else { return State(paused: false) }
        return state
    }

    /// Sets the queue's switch for the whole fleet; returns it as stored.
    @discardableResult
    public func set(_ paused: Bool, queue: String, by actor: String) async throws -> State {
        let state = State(paused: paused, by: actor, at: WallClock.nowMillis())
        let text = String(decoding: try JSONEncoder().encode(state), as: UTF8.self)
        try await registry.setValue(text, named: Self.valueName(queue))
        return state
    }
}
