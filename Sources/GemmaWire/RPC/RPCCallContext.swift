import Logging

/// What a handler knows about the call it serves.
public struct RPCCallContext: Sendable {
    /// The method called: "gemma.v1.Tokenizer/Encode".
    public let method: String
    /// The client's id for the call (the same on every try).
    public let requestID: UInt64
    /// 1 for the first try, 2 for the first retry, ...
    public let attempt: UInt32
    /// When the caller stops waiting; pass it on to the calls made for this one.
    public let deadline: RPCDeadline
    /// The caller's trace id ("" if none); pass it on too.
    public let traceID: String
    /// A logger whose metadata names the request (request_id, method, attempt, trace_id).
    public let logger: Logger
}
