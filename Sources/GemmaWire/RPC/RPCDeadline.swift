import Foundation

/// When a caller stops waiting: a wall-clock instant in microseconds since the Unix epoch,
/// as the envelope carries it (`deadline_unix_micros`), so it keeps its meaning from host
/// to host as a request is passed on.
public struct RPCDeadline: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Microseconds since 1970-01-01T00:00:00Z; 0 means no deadline.
    public let unixMicros: Int64

    /// The deadline `unixMicros` microseconds after the epoch (0 for none).
    public init(unixMicros: Int64) {
        self.unixMicros = max(0, unixMicros)
    }

    /// No deadline: wait as long as it takes.
    public static let none = RPCDeadline(unixMicros: 0)

    /// The deadline `duration` from now.
    public static func after(_ duration: Duration) -> RPCDeadline {
        let (seconds, attoseconds) = duration.components
        let micros = seconds.multipliedReportingOverflow(by: 1_000_000)
        let delta = micros.overflow ? Int64.max / 2 : micros.partialValue + attoseconds / 1_000_000_000_000
        return RPCDeadline(unixMicros: max(1, nowMicros() + delta))
    }

    /// Whether there is a deadline.
    public var isSet: Bool { unixMicros != 0 }

    /// Time left (negative once passed), or nil when there is no deadline.
    public var remaining: Duration? {
        guard isSet else { return nil }
        return .microseconds(unixMicros - Self.nowMicros())
    }

    /// Whether the deadline is set and has passed.
    public var hasPassed: Bool { isSet && unixMicros <= Self.nowMicros() }

    /// The earlier of two deadlines (a missing one counts as later than any).
    public func earliest(_ other: RPCDeadline) -> RPCDeadline {
        if !isSet { return other }
        if !other.isSet { return self }
        return self < other ? self : other
    }

    /// Earlier deadlines sort first; no deadline sorts last.
    public static func < (lhs: RPCDeadline, rhs: RPCDeadline) -> Bool {
        // No deadline sorts last.
        switch (lhs.isSet, rhs.isSet) {
        case (true, true): return lhs.unixMicros < rhs.unixMicros
        case (true, false): return true
        default: return false
        }
    }

    /// "none", or the time left ("in 1.5 s", "passed 20 ms ago").
    public var description: String {
        guard let remaining else { return "none" }
        let millis = Double(remaining.components.seconds) * 1000
            + Double(remaining.components.attoseconds) / 1e15
        return millis >= 0 ? "in \(Self.format(millis))" : "passed \(Self.format(-millis)) ago"
    }

    private static func format(_ millis: Double) -> String {
        millis >= 1000 ? String(format: "%.2f s", millis / 1000) : String(format: "%.1f ms", millis)
    }

    /// The current wall-clock time in microseconds since the epoch.
    static func nowMicros() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000
    }
}
