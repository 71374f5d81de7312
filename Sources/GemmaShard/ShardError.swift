/// Why a stage refused a request. Each case maps to one gRPC status (`statusName`), and a
/// refused request changes nothing on the stage.
public enum ShardError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The request is malformed for this stage (shape, ids, positions, parameters):
    /// INVALID_ARGUMENT. Retrying it cannot help.
    case invalidArgument(String)
    /// A segment with a non-zero start for a sequence the stage holds no KV cache for (it was
    /// released, or the stage restarted): FAILED_PRECONDITION. The router re-prefills.
    case unknownSequence(id: UInt64, startPosition: Int)
    /// A segment that starts after the cached positions of its sequence: FAILED_PRECONDITION.
    case positionGap(id: UInt64, cachedPositions: Int, startPosition: Int)
    /// The batch would take the KV cache past its budget: RESOURCE_EXHAUSTED. Nothing was
    /// evicted; retry after sequences are released.
    case kvCacheExhausted(neededBytes: Int, usedBytes: Int, capacityBytes: Int)
    /// The computation failed unexpectedly: INTERNAL.
    case internalError(String)

    /// The gRPC status this error is reported as.
    public var statusName: String {
        switch self {
        case .invalidArgument: return "INVALID_ARGUMENT"
        case .unknownSequence, .positionGap: return "FAILED_PRECONDITION"
        case .kvCacheExhausted: return "RESOURCE_EXHAUSTED"
        case .internalError: return "INTERNAL"
        }
    }

    public var description: String {
        switch self {
        case .invalidArgument(let message):
            return message
        case let .unknownSequence(id, start):
            return "unknown sequence \(id): this stage holds no KV cache for it, segment starts at \(start); prefill it from position 0"
        case let .positionGap(id, cached, start):
            return "sequence \(id) has \(cached) cached positions, segment starts at \(start); resend from position \(cached) or earlier"
        case let .kvCacheExhausted(needed, used, capacity):
            return "the KV cache is full: the batch needs \(needed) more bytes, \(used) of \(capacity) are in use; release sequences or retry later"
        case .internalError(let message):
            return message
        }
    }
}
