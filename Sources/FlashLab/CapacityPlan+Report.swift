import Foundation

extension CapacityPlan {
    /// The planner's answer as text, one figure per line.
    public func report(drainTarget: Double?) -> String {
        var lines: [String] = []
        lines.append("capacity plan: demand \(Format.number(demand))/s for \(Format.seconds(duration)), \(workers) worker\(workers == 1 ? "" : "s") × \(Format.seconds(serviceTime)) per order")
        lines.append("  capacity                 \(Format.number(capacity)) orders/s   (W / S = \(workers) / \(Format.seconds(serviceTime)))")
        lines.append("  utilisation ρ            \(utilization.isFinite ? String(format: "%.1f%%", utilization * 100) : "∞")")
        lines.append("  shortfall                \(Format.number(shortfall)) orders/s")
        lines.append("  arrivals during the sale \(Format.number(arrivals))")
        lines.append("  peak queue depth         \(Format.number(peakQueueDepth)) orders   (at the sale's end)")
        lines.append("  drain time               \(Format.seconds(drainTime))   (after the sale; empty at \(Format.seconds(timeToEmpty)))")
        lines.append("  minimum workers          \(minimumWorkers) for no backlog (Little's law: λ·S = \(Format.number(littlesLawWorkers)) busy); \(minimumWorkersStable) for ρ < 1 under random arrivals")
        if let drainTarget {
            lines.append("  to drain within \(Format.seconds(drainTarget))   \(workersToDrain(within: drainTarget)) workers")
        }
        return lines.joined(separator: "\n")
    }

    /// The plan as one JSON object.
    public func json(drainTarget: Double?) -> String {
        func n(_ v: Double) -> String { v.isFinite ? String(format: "%.6g", v) : "null" }
        var fields = [
            "\"demand_per_second\":\(n(demand))", "\"service_time_seconds\":\(n(serviceTime))",
            "\"duration_seconds\":\(n(duration))", "\"workers\":\(workers)", "\"capacity_per_second\":\(n(capacity))",
            "\"utilization\":\(n(utilization))", "\"shortfall_per_second\":\(n(shortfall))", "\"arrivals\":\(n(arrivals))",
            "\"peak_queue_depth\":\(n(peakQueueDepth))", "\"drain_time_seconds\":\(n(drainTime))",
            "\"time_to_empty_seconds\":\(n(timeToEmpty))", "\"littles_law_workers\":\(n(littlesLawWorkers))",
            "\"minimum_workers\":\(minimumWorkers)", "\"minimum_workers_stable\":\(minimumWorkersStable)",
        ]
        if let drainTarget {
            fields.append("\"drain_target_seconds\":\(n(drainTarget))")
            fields.append("\"workers_to_drain_within_target\":\(workersToDrain(within: drainTarget))")
        }
        return "{" + fields.joined(separator: ",") + "}"
    }
}
