/// Why a call has no result: a gRPC status code and a message a person can act on.
///
/// Servers reply with it (a handler throws it to choose the code); clients throw it for
/// error replies and for their own failures (deadline, closed client, undecodable reply).
public struct RPCError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The status code; never `.ok`.
    public var code: RPCStatusCode
    /// What went wrong, naming the method, field or limit involved.
    public var message: String

    /// An error with `code` and `message`.
    public init(_ code: RPCStatusCode, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The error a reply's status stands for.
    public init(status: Gemma_V1_Status) {
        self.init(status.code, status.message)
    }

    /// The status to put in a reply.
    public var status: Gemma_V1_Status {
        var status = Gemma_V1_Status()
        status.code = code
        status.message = message
        return status
    }

    /// "CODE: message".
    public var description: String { "\(code): \(message)" }

    /// A request that could not be understood.
    public static func invalidArgument(_ message: String) -> RPCError { RPCError(.invalidArgument, message) }
    /// Something that should not happen happened on the server.
    public static func `internal`(_ message: String) -> RPCError { RPCError(.internal, message) }
    /// The thing the request names does not exist.
    public static func notFound(_ message: String) -> RPCError { RPCError(.notFound, message) }
    /// The service cannot take the call now; retrying later or elsewhere may work.
    public static func unavailable(_ message: String) -> RPCError { RPCError(.unavailable, message) }

    /// The error for anything a handler throws: an `RPCError` as it is, others as UNKNOWN
    /// with their description.
    static func from(_ error: any Error) -> RPCError {
        if let error = error as? RPCError { return error }
        if error is CancellationError { return RPCError(.cancelled, "the call was cancelled") }
        return RPCError(.unknown, String(describing: error))
    }
}
