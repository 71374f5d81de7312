import CNNG
import Foundation
import Logging
import SwiftProtobuf

/// Calls methods on servers over one nng REQ socket.
///
/// The socket dials every URL without blocking and reconnects whenever a connection is lost;
/// with several URLs (replicas of one service) nng spreads calls over the connected ones.
/// Each call uses its own nng context, so any number of calls run concurrently on the one
/// socket. nng's own resend timer is off: the client retries itself, within the call's
/// deadline, counting attempts in the envelope (see `RetryPolicy`).
///
/// Safe to share between tasks. `close()` ends pending calls with UNAVAILABLE.
public final class RPCClient: Sendable {
    /// When and how a call is tried again.
    public struct RetryPolicy: Sendable {
        /// Most tries of one call, the first included.
        public var maxAttempts: Int
        /// Longest wait for one try's reply before trying again; nil waits until the deadline.
        ///
        /// A try whose request was lost (the server died after reading it) is retried only
        /// after this; set it for methods that are safe to repeat (all gemma.v1 methods are).
        public var attemptTimeout: Duration?
        /// Pause before the first retry after an error reply; doubles up to `maxBackoff`.
        public var initialBackoff: Duration
        /// Longest pause between retries.
        public var maxBackoff: Duration
        /// Reply codes that are retried (a draining server answers UNAVAILABLE).
        public var retryableCodes: Set<RPCStatusCode>

        /// A policy; the defaults retry UNAVAILABLE replies up to 5 tries, 20 ms to 1 s apart.
        public init(maxAttempts: Int = 5, attemptTimeout: Duration? = nil,
                    initialBackoff: Duration = .milliseconds(20), maxBackoff: Duration = .seconds(1),
                    retryableCodes: Set<RPCStatusCode> = [.unavailable]) {
            self.maxAttempts = max(1, maxAttempts)
            self.attemptTimeout = attemptTimeout
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
            self.retryableCodes = retryableCodes
        }

        /// One try, no retries.
        public static let never = RetryPolicy(maxAttempts: 1)
    }

    /// Settings of a client.
    public struct Configuration: Sendable {
        /// Largest reply accepted (NNG_OPT_RECVMAXSZ) and largest request sent, in bytes.
        public var maxMessageBytes: Int
        /// Retries.
        public var retry: RetryPolicy
        /// First wait before reconnecting a lost connection; doubles up to `reconnectMaximum`.
        public var reconnectMinimum: Duration
        /// Longest wait between reconnection tries.
        public var reconnectMaximum: Duration
        /// Whether a call made while the server is gone waits (within its deadline) for the
        /// connection to come back. When false, once a connection the client had closes, the
        /// calls in flight fail at once with UNAVAILABLE, and so do new calls until it is back:
        /// for callers that have somewhere else to go (the router's stage replicas).
        public var waitsForConnection: Bool

        /// Settings; 64 MiB messages, `RetryPolicy()`, reconnecting after 20 ms to 1 s, calls
        /// waiting for a lost connection.
        public init(maxMessageBytes: Int = 64 << 20, retry: RetryPolicy = RetryPolicy(),
                    reconnectMinimum: Duration = .milliseconds(20), reconnectMaximum: Duration = .seconds(1),
                    waitsForConnection: Bool = true) {
            self.maxMessageBytes = maxMessageBytes
            self.retry = retry
            self.reconnectMinimum = reconnectMinimum
            self.reconnectMaximum = reconnectMaximum
            self.waitsForConnection = waitsForConnection
        }
    }

    /// The servers this client dials.
    public let urls: [String]
    /// Its settings.
    public let configuration: Configuration
    private let socket: NNGSocket
    private let contexts: ContextPool
    private let inFlight = InFlightCalls()
    private let requestIDs: RequestIDCounter
    private let logger: Logger

    /// A client of the servers at `urls` (tcp://host:port, ipc:///path, inproc://name).
    /// Returns at once: connections are made (and remade) in the background, and calls
    /// wait for one until their deadline.
    ///
    /// - Throws: `RPCError` INVALID_ARGUMENT for a malformed URL or unknown transport.
    public init(urls: [String], configuration: Configuration = Configuration(),
                logger: Logger = Logger(label: "gemma.wire.client")) throws(RPCError) {
        guard !urls.isEmpty else { throw RPCError(.invalidArgument, "RPCClient needs at least one URL") }
        do {
            let socket = try NNGSocket(.request, maxMessageBytes: configuration.maxMessageBytes)
            try socket.setReconnect(minimum: configuration.reconnectMinimum, maximum: configuration.reconnectMaximum)
            for url in urls { try socket.dial(url) }
            self.socket = socket
        } catch {
            throw RPCError(.invalidArgument, "cannot connect to \(urls.joined(separator: ", ")): \(error)")
        }
        self.urls = urls
        self.configuration = configuration
        self.contexts = ContextPool()
        self.requestIDs = RequestIDCounter()
        var logger = logger
        logger[metadataKey: "servers"] = .string(urls.joined(separator: ","))
        self.logger = logger
        if !configuration.waitsForConnection {
            let inFlight = self.inFlight
            socket.connections?.observe { connected in
                if !connected { inFlight.abortAll() }
            }
        }
    }

    /// A client of the server at `url`.
    public convenience init(url: String, configuration: Configuration = Configuration(),
                            logger: Logger = Logger(label: "gemma.wire.client")) throws(RPCError) {
        try self.init(urls: [url], configuration: configuration, logger: logger)
    }

    deinit {
        close()
    }

    /// Whether the client has a connection to at least one of its servers now.
    public var isConnected: Bool { socket.connections?.isConnected ?? false }

    /// Calls `handler(false)` whenever the client's last connection closes (its server went
    /// away) and `handler(true)` when one opens, on a queue of the client's own.
    public func onConnectionChange(_ handler: @escaping @Sendable (Bool) -> Void) {
        socket.connections?.observe(handler)
    }

    /// Fails every call in flight at once with UNAVAILABLE (for a caller that found the server
    /// unresponsive by other means, such as a missed heartbeat).
    public func abortCalls() {
        inFlight.abortAll()
    }

    /// Closes the socket; pending and later calls fail with UNAVAILABLE.
    public func close() {
        contexts.close()
        socket.close()
    }

    /// Calls `method` with `request` and returns its reply.
    ///
    /// - Parameters:
    ///   - deadline: when to give up; the server sees it too and drops the work once it passes.
    ///   - traceID: an id tying this call to the user request it serves, for the logs.
    /// - Throws: `RPCError` with the server's status, or DEADLINE_EXCEEDED, CANCELLED (task
    ///   cancelled), UNAVAILABLE (client closed, tries used up), INVALID_ARGUMENT (request too
    ///   large), INTERNAL (undecodable reply).
    public func call<Request, Response>(_ method: RPCMethod<Request, Response>, _ request: Request,
                                        deadline: RPCDeadline, traceID: String = "") async throws(RPCError) -> Response {
        let payload: [UInt8]
        do {
            payload = try request.serializedBytes()
        } catch {
            throw RPCError(.invalidArgument, "cannot serialize \(Request.protoMessageName) for \(method.name): \(error)")
        }
        let reply = try await callRaw(method.name, payload: payload, deadline: deadline, traceID: traceID)
        do {
            return try Response(serializedBytes: reply)
        } catch {
            throw RPCError(.internal, "\(method.name) replied with an undecodable \(Response.protoMessageName) (\(reply.count) bytes): \(error)")
        }
    }

    /// Calls `method` with `request`, giving up after `timeout`.
    public func call<Request, Response>(_ method: RPCMethod<Request, Response>, _ request: Request,
                                        timeout: Duration, traceID: String = "") async throws(RPCError) -> Response {
        try await call(method, request, deadline: .after(timeout), traceID: traceID)
    }

    /// Calls the method named `method` with an already serialized request payload, and
    /// returns the serialized reply payload (for methods without an `RPCMethod`, and tests).
    public func callRaw(_ method: String, payload: [UInt8], deadline: RPCDeadline,
                        traceID: String = "") async throws(RPCError) -> [UInt8] {
        let requestID = requestIDs.next()
        var envelope = Gemma_V1_Request()
        envelope.method = method
        envelope.requestID = requestID
        envelope.deadlineUnixMicros = deadline.unixMicros
        envelope.traceID = traceID
        envelope.payload = Data(payload)

        let policy = configuration.retry
        var backoff = policy.initialBackoff
        var lastProblem = "no reply"
        var attempt: UInt32 = 0
        while true {
            attempt += 1
            if Task.isCancelled {
                throw RPCError(.cancelled, "\(method) (request \(requestID)) was cancelled")
            }
            let remaining = deadline.remaining
            if let remaining, remaining <= .zero {
                throw deadlineExceeded(method, requestID, deadline, attempts: attempt - 1, lastProblem: lastProblem)
            }
            let isLastAttempt = Int(attempt) >= policy.maxAttempts
            var budget = remaining
            if let limit = policy.attemptTimeout, !isLastAttempt {
                budget = budget.map { min($0, limit) } ?? limit
            }
            // Whether this try may wait until the deadline (then its timeout is the deadline's,
            // even if nng's millisecond timer fires a little early).
            let waitsUntilDeadline = remaining != nil && budget == remaining

            envelope.attempt = attempt
            let bytes: [UInt8]
            do {
                bytes = try envelope.serializedBytes()
            } catch {
                throw RPCError(.invalidArgument, "cannot serialize the envelope of \(method): \(error)")
            }
            guard bytes.count <= configuration.maxMessageBytes else {
                throw RPCError(.invalidArgument, "request to \(method) is \(bytes.count) bytes, over the \(configuration.maxMessageBytes)-byte message limit")
            }

            switch await exchange(bytes, timeout: budget.map(nngMilliseconds) ?? nngInfinite) {
            case .success(let replyBytes):
                let reply: Gemma_V1_Reply
                do {
                    reply = try Gemma_V1_Reply(serializedBytes: replyBytes)
                } catch {
                    throw RPCError(.internal, "\(method) (request \(requestID)): undecodable reply envelope (\(replyBytes.count) bytes): \(error)")
                }
                if reply.status.code == .ok {
                    return [UInt8](reply.payload)
                }
                let error = RPCError(status: reply.status)
                guard policy.retryableCodes.contains(error.code), !isLastAttempt else { throw error }
                lastProblem = error.description
                // Wait before retrying, unless that would pass the deadline.
                if let left = deadline.remaining, left <= backoff { throw error }
                logger.debug("retrying after error reply", metadata: [
                    "request_id": "\(requestID)", "method": "\(method)", "attempt": "\(attempt)", "error": "\(error)"])
                do {
                    try await Task.sleep(for: backoff)
                } catch {
                    throw RPCError(.cancelled, "\(method) (request \(requestID)) was cancelled")
                }
                backoff = min(backoff * 2, policy.maxBackoff)
            case .failure(let error):
                switch error.code {
                case NNGError.timedOut:
                    lastProblem = "no reply within the try's time limit"
                    if waitsUntilDeadline || deadline.hasPassed {
                        throw deadlineExceeded(method, requestID, deadline, attempts: attempt, lastProblem: lastProblem)
                    }
                    if isLastAttempt {
                        throw RPCError(.unavailable, "\(method) (request \(requestID)): no reply after \(attempt) tries of \(policy.attemptTimeout.map { "\($0)" } ?? "unlimited time") from \(urls.joined(separator: ", "))")
                    }
                    logger.debug("retrying after timeout", metadata: [
                        "request_id": "\(requestID)", "method": "\(method)", "attempt": "\(attempt)"])
                case NNGError.cancelled:
                    throw RPCError(.cancelled, "\(method) (request \(requestID)) was cancelled")
                case NNGError.closed:
                    throw RPCError(.unavailable, "\(method) (request \(requestID)): the client is closed")
                default:
                    // A lost connection (nng 1.5 reports ECONNRESET for a reply that can no
                    // longer come): the request may never have arrived, so try again.
                    lastProblem = error.code == NNGError.connectionReset
                        ? "the connection to \(urls.joined(separator: ", ")) is lost" : error.description
                    if isLastAttempt {
                        throw RPCError(.unavailable, "\(method) (request \(requestID)): \(lastProblem) after \(attempt) tries")
                    }
                    do {
                        try await Task.sleep(for: backoff)
                    } catch {
                        throw RPCError(.cancelled, "\(method) (request \(requestID)) was cancelled")
                    }
                    backoff = min(backoff * 2, policy.maxBackoff)
                }
            }
        }
    }

    private func deadlineExceeded(_ method: String, _ requestID: UInt64, _ deadline: RPCDeadline,
                                  attempts: UInt32, lastProblem: String) -> RPCError {
        RPCError(.deadlineExceeded, "\(method) (request \(requestID)): deadline passed after \(attempts) tries (\(lastProblem)); servers: \(urls.joined(separator: ", "))")
    }

    /// One try: send on a context, then wait for the matching reply, both within `timeout`.
    private func exchange(_ bytes: [UInt8], timeout: nng_duration) async -> Result<[UInt8], NNGError> {
        let lost = NNGError(operation: "RPCClient", code: NNGError.connectionReset)
        let context: NNGContext
        do {
            guard let taken = try contexts.take(socket: socket) else {
                return .failure(NNGError(operation: "RPCClient", code: NNGError.closed))
            }
            context = taken
        } catch {
            return .failure(error)
        }
        defer { contexts.giveBack(context) }
        let call = inFlight.register(context)
        defer { inFlight.unregister(call) }
        // Registered first, so that a connection lost from here on aborts this call too.
        if !configuration.waitsForConnection, socket.connections?.isLost == true { return .failure(lost) }
        let start = ContinuousClock.now
        let sent = await context.send(bytes, timeout: timeout)
        guard sent == 0 else {
            return .failure(inFlight.wasAborted(call) ? lost : NNGError(operation: "nng_ctx_send", code: sent))
        }
        var left = timeout
        if timeout != nngInfinite {
            left = max(1, timeout - nngMilliseconds(ContinuousClock.now - start))
        }
        let received = await context.receive(timeout: left)
        if case .failure = received, inFlight.wasAborted(call) { return .failure(lost) }
        return received
    }
}

/// Idle contexts of a client's socket, reused from call to call.
private final class ContextPool: @unchecked Sendable {
    private let lock = NSLock()
    private var idle: [NNGContext] = []
    private var closed = false

    /// An idle context, or a new one; nil once closed.
    func take(socket: NNGSocket) throws(NNGError) -> NNGContext? {
        lock.lock()
        if closed {
            lock.unlock()
            return nil
        }
        if let context = idle.popLast() {
            lock.unlock()
            return context
        }
        lock.unlock()
        return try NNGContext(socket: socket)
    }

    func giveBack(_ context: NNGContext) {
        lock.lock()
        if !closed && idle.count < 256 {
            idle.append(context)
        }
        lock.unlock()
    }

    func close() {
        lock.lock()
        closed = true
        let contexts = idle
        idle = []
        lock.unlock()
        _ = contexts
    }
}

/// The calls a client has in flight, so that they can be failed at once when the server goes.
private final class InFlightCalls: @unchecked Sendable {
    private let lock = NSLock()
    private var next: UInt64 = 0
    private var calls: [UInt64: NNGContext] = [:]
    private var aborted = Set<UInt64>()

    func register(_ context: NNGContext) -> UInt64 {
        lock.lock()
        defer { lock.unlock() }
        next += 1
        calls[next] = context
        return next
    }

    func unregister(_ call: UInt64) {
        lock.lock()
        calls[call] = nil
        aborted.remove(call)
        lock.unlock()
    }

    func wasAborted(_ call: UInt64) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return aborted.contains(call)
    }

    /// Cancels every registered call's operation; each then reports a lost connection.
    func abortAll() {
        lock.lock()
        defer { lock.unlock() }
        for (call, context) in calls where !aborted.contains(call) {
            aborted.insert(call)
            context.cancel()
        }
    }
}

/// Request ids: random start (ids from a restarted client do not repeat), then +1.
private final class RequestIDCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var last = UInt64.random(in: 1 ... (UInt64.max >> 2))

    func next() -> UInt64 {
        lock.lock()
        defer { lock.unlock() }
        last &+= 1
        return last
    }
}
