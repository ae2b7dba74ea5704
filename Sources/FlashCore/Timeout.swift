/// Thrown by ``withTimeout(_:_:)`` when the operation did not finish in time.
public struct TimeoutError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The time the operation was given.
    public var limit: Duration

    public init(limit: Duration) {
        self.limit = limit
    }

    public var description: String { "no answer within \(limit.shortDescription)" }
}

/// Runs `operation`, cancelling it and throwing ``TimeoutError`` if it has not finished after
/// `limit`. The call returns once the operation has ended (it is structured), so the operation
/// must honour cancellation for the limit to hold.
///
/// Hand-written on purpose: swift-async-algorithms 1.1 has no timeout for a single call, and
/// NIO's deadlines belong to channels, not to arbitrary async work.
public func withTimeout<T: Sendable>(_ limit: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { throw CancellationError() }
        guard let result = first else { throw TimeoutError(limit: limit) }
        return result
    }
}
