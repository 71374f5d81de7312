import CNNG
import Foundation
import Logging
import ServiceLifecycle
import SwiftProtobuf

/// Serves registered methods on an nng REP socket.
///
/// The socket listens on one or more URLs (tcp://, ipc://, inproc://). A fixed set of nng
/// contexts receives requests, so up to `Configuration.maxConcurrentRequests` handlers run at
/// once; a few spare contexts answer RESOURCE_EXHAUSTED when all of them are busy. Every reply
/// carries a status: UNIMPLEMENTED for an unknown method, INVALID_ARGUMENT for an envelope or
/// payload that does not decode, DEADLINE_EXCEEDED for work whose deadline passed (it is not
/// started, or is cancelled when the deadline passes), UNAVAILABLE while shutting down. Messages
/// over `maxMessageBytes` never reach the server: nng drops them and closes their connection.
///
/// As a swift-service-lifecycle `Service`, `run()` serves until a graceful shutdown (SIGTERM in
/// a `ServiceGroup`, or `shutdownGracefully()`): it answers new requests UNAVAILABLE (so that
/// clients retry elsewhere), lets in-flight requests finish within `shutdownGracePeriod`, and
/// returns. Cancelling the task that runs it stops at once.
public final class RPCServer: Service, @unchecked Sendable {
    /// Settings of a server.
    public struct Configuration: Sendable {
        /// Largest request accepted (NNG_OPT_RECVMAXSZ) and largest reply sent, in bytes.
        public var maxMessageBytes: Int
        /// Handlers running at once at most.
        public var maxConcurrentRequests: Int
        /// Extra contexts that answer RESOURCE_EXHAUSTED while all handlers are busy.
        public var spareContexts: Int
        /// How long a graceful shutdown waits for in-flight requests.
        public var shutdownGracePeriod: Duration
        /// How long sending a reply may wait for the connection to take it.
        public var replySendTimeout: Duration

        /// Settings; 64 MiB messages, 64 concurrent requests plus 8 spare contexts, 10 s grace.
        public init(maxMessageBytes: Int = 64 << 20, maxConcurrentRequests: Int = 64, spareContexts: Int = 8,
                    shutdownGracePeriod: Duration = .seconds(10), replySendTimeout: Duration = .seconds(10)) {
            self.maxMessageBytes = maxMessageBytes
            self.maxConcurrentRequests = max(1, maxConcurrentRequests)
            self.spareContexts = max(1, spareContexts)
            self.shutdownGracePeriod = shutdownGracePeriod
            self.replySendTimeout = replySendTimeout
        }
    }

    /// A handler on serialized payloads: request bytes in, reply bytes out.
    public typealias RawHandler = @Sendable ([UInt8], RPCCallContext) async throws -> [UInt8]

    /// The URLs the server was asked to listen on.
    public let urls: [String]
    /// Its settings.
    public let configuration: Configuration
    private let logger: Logger
    private let state = ServerState()
    private let shutdownSignal = ShutdownSignal()
    private let watchdog = DeadlineWatchdog()

    /// A server that will listen on `urls` once started.
    public init(urls: [String], configuration: Configuration = Configuration(),
                logger: Logger = Logger(label: "gemma.wire.server")) {
        self.urls = urls
        self.configuration = configuration
        self.logger = logger
    }

    /// A server that will listen on `url` once started.
    public convenience init(url: String, configuration: Configuration = Configuration(),
                            logger: Logger = Logger(label: "gemma.wire.server")) {
        self.init(urls: [url], configuration: configuration, logger: logger)
    }

    /// Serves `method` with `handler`, which gets the decoded request. A handler throws
    /// `RPCError` to choose the reply's status; any other error replies UNKNOWN with its
    /// description. Register before `run()`; a later registration replaces an earlier one.
    public func register<Request, Response>(_ method: RPCMethod<Request, Response>,
                                            _ handler: @escaping @Sendable (Request, RPCCallContext) async throws -> Response) {
        registerRaw(method.name) { payload, context in
            let request: Request
            do {
                request = try Request(serializedBytes: payload)
            } catch {
                throw RPCError(.invalidArgument, "cannot decode the \(Request.protoMessageName) payload of \(method.name) (\(payload.count) bytes): \(error)")
            }
            let response = try await handler(request, context)
            do {
                return try response.serializedBytes()
            } catch {
                throw RPCError(.internal, "cannot serialize the \(Response.protoMessageName) reply of \(method.name): \(error)")
            }
        }
    }

    /// Serves the method named `name` with a handler on serialized payloads.
    public func registerRaw(_ name: String, _ handler: @escaping RawHandler) {
        state.withLock { $0.handlers[name] = handler }
    }

    /// The names of the registered methods, sorted.
    public var methods: [String] {
        state.withLock { $0.handlers.keys.sorted() }
    }

    /// Opens the socket and starts listening (`run()` does it if needed); after this,
    /// `boundURLs` tells the actual TCP ports.
    ///
    /// - Throws: `RPCError` UNAVAILABLE naming the URL when it cannot be listened on.
    public func start() throws(RPCError) {
        if state.withLock({ $0.socket != nil }) { return }
        let socket: NNGSocket
        var bound: [String] = []
        do {
            socket = try NNGSocket(.reply, maxMessageBytes: configuration.maxMessageBytes)
            for url in urls {
                let listener = try socket.listen(url)
                bound.append(Self.boundURL(url, listener: listener))
            }
        } catch {
            throw RPCError(.unavailable, "cannot listen on \(urls.joined(separator: ", ")): \(error)")
        }
        var contexts: [NNGContext] = []
        do {
            for _ in 0 ..< configuration.maxConcurrentRequests + configuration.spareContexts {
                contexts.append(try NNGContext(socket: socket))
            }
        } catch {
            socket.close()
            throw RPCError(.internal, "cannot open server contexts: \(error)")
        }
        state.withLock {
            $0.socket = socket
            $0.boundURLs = bound
            $0.contexts = contexts
        }
        logger.info("listening", metadata: ["urls": "\(bound.joined(separator: ","))",
                                             "methods": "\(methods.joined(separator: ","))"])
    }

    /// The URLs listened on, with the actual port for tcp://...:0; empty before `start()`.
    public var boundURLs: [String] {
        state.withLock { $0.boundURLs }
    }

    /// Requests whose handlers are running now.
    public var inFlightRequests: Int {
        state.withLock { $0.inFlight }
    }

    /// Whether a graceful shutdown has begun (new requests are answered UNAVAILABLE).
    public var isDraining: Bool {
        state.withLock { $0.draining }
    }

    /// Starts a graceful shutdown of `run()`, as SIGTERM does in a `ServiceGroup`.
    public func shutdownGracefully() {
        shutdownSignal.fire()
    }

    /// Serves until a graceful shutdown completes or the task is cancelled.
    public func run() async throws {
        try start()
        for context in state.withLock({ $0.contexts }) {
            spawnLoop(on: context)
        }
        await withTaskCancellationHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.watchdog.run() }
                await withGracefulShutdownHandler {
                    await shutdownSignal.wait()
                } onGracefulShutdown: {
                    self.shutdownSignal.fire()
                }
                await drainAndClose()
                await waitForLoopsToEnd()
                group.cancelAll()
            }
        } onCancel: {
            self.cancelLoops()
        }
        state.withLock { $0.contexts = [] }
        logger.info("stopped")
    }

    /// Stops accepting work, waits (boundedly) for in-flight requests, then closes the socket.
    private func drainAndClose() async {
        // The listeners stay open: closing one would also drop its connections, and with them
        // the replies of requests in flight. New requests are answered UNAVAILABLE instead.
        let socket = state.withLock { state -> NNGSocket? in
            state.draining = true
            return state.socket
        }
        if !Task.isCancelled {
            let inFlight = inFlightRequests
            logger.info("shutting down", metadata: ["in_flight": "\(inFlight)",
                                                    "grace_period": "\(configuration.shutdownGracePeriod)"])
            let giveUp = ContinuousClock.now + configuration.shutdownGracePeriod
            while inFlightRequests > 0 && ContinuousClock.now < giveUp && !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(5))
            }
            let abandoned = inFlightRequests
            if abandoned > 0 {
                logger.warning("grace period over; cancelling requests", metadata: ["in_flight": "\(abandoned)"])
            }
            // Replies handed to nng are written by its I/O threads; give them a moment
            // before the close tears the connections down.
            try? await Task.sleep(for: .milliseconds(50))
        }
        cancelLoops()
        socket?.close()
    }

    /// Starts the loop that serves requests arriving on `context`, unless the server stops.
    ///
    /// Each loop is a task of its own so that the watchdog can cancel the handler of a request
    /// whose deadline passed (the handler runs on the loop's task, which costs no extra task
    /// switch per request); a cancelled loop ends after that request and a new one takes over
    /// its context.
    private func spawnLoop(on context: NNGContext) {
        state.withLock { state in
            guard !state.stopping else { return }
            let id = state.nextLoopID
            state.nextLoopID += 1
            state.loops[id] = Task { await self.serve(on: context, loop: id) }
        }
    }

    /// Cancels every loop; none is started again.
    private func cancelLoops() {
        let loops = state.withLock { state -> [Task<Void, Never>] in
            state.stopping = true
            return Array(state.loops.values)
        }
        for loop in loops { loop.cancel() }
    }

    private func waitForLoopsToEnd() async {
        while state.withLock({ !$0.loops.isEmpty }) {
            try? await Task.sleep(for: .milliseconds(2))
        }
    }

    /// One loop on a context: receive a request, answer it, repeat until the socket closes or
    /// the loop is cancelled.
    private func serve(on context: NNGContext, loop id: Int) async {
        defer {
            let replace = state.withLock { state -> Bool in
                state.loops[id] = nil
                return !state.stopping
            }
            if replace { spawnLoop(on: context) }
        }
        while !Task.isCancelled {
            let received = await context.receive(timeout: nngInfinite)
            let requestBytes: [UInt8]
            switch received {
            case .success(let bytes):
                requestBytes = bytes
            case .failure(let error):
                if error.code == NNGError.closed || error.code == NNGError.cancelled { return }
                logger.warning("receive failed", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(10))
                continue
            }
            let (reply, counted) = await respond(to: requestBytes, loop: state.withLock { $0.loops[id] })
            var replyBytes = (try? reply.serializedBytes()) ?? []
            if replyBytes.count > configuration.maxMessageBytes {
                var tooLarge = Gemma_V1_Reply()
                tooLarge.requestID = reply.requestID
                tooLarge.status = RPCError(.resourceExhausted, "the reply is \(replyBytes.count) bytes, over the \(configuration.maxMessageBytes)-byte message limit").status
                replyBytes = (try? tooLarge.serializedBytes()) ?? []
            }
            let timeout = nngMilliseconds(configuration.replySendTimeout)
            let sent: Int32
            if Task.isCancelled {
                // The watchdog cancelled this loop (deadline) or the server stops: the reply
                // still goes out, from a task that is not cancelled.
                sent = await Task.detached { await context.send(replyBytes, timeout: timeout) }.value
            } else {
                sent = await context.send(replyBytes, timeout: timeout)
            }
            if counted { state.withLock { $0.inFlight -= 1 } }
            if sent == NNGError.closed { return }
            if sent != 0 {
                logger.notice("reply not sent", metadata: ["request_id": "\(reply.requestID)",
                                                            "error": "\(NNGError(operation: "nng_ctx_send", code: sent))"])
            }
        }
    }

    /// The reply to one received message, and whether it was counted as in flight (the
    /// count drops once the reply is sent).
    private func respond(to bytes: [UInt8], loop: Task<Void, Never>?) async -> (Gemma_V1_Reply, Bool) {
        var reply = Gemma_V1_Reply()
        let request: Gemma_V1_Request
        do {
            request = try Gemma_V1_Request(serializedBytes: bytes)
        } catch {
            logger.notice("undecodable request envelope", metadata: ["bytes": "\(bytes.count)"])
            reply.status = RPCError(.invalidArgument, "cannot decode the request envelope (gemma.v1.Request, \(bytes.count) bytes): \(error)").status
            return (reply, false)
        }
        reply.requestID = request.requestID
        var logger = self.logger
        logger[metadataKey: "request_id"] = "\(request.requestID)"
        logger[metadataKey: "method"] = "\(request.method)"
        if request.attempt > 1 { logger[metadataKey: "attempt"] = "\(request.attempt)" }
        if !request.traceID.isEmpty { logger[metadataKey: "trace_id"] = "\(request.traceID)" }

        let deadline = RPCDeadline(unixMicros: request.deadlineUnixMicros)
        enum Admission { case run(RawHandler), refuse(RPCError) }
        let admission: Admission = state.withLock { state in
            if state.draining {
                return .refuse(RPCError(.unavailable, "the server is shutting down; try another replica or retry"))
            }
            guard let handler = state.handlers[request.method] else {
                let known = state.handlers.keys.sorted().joined(separator: ", ")
                return .refuse(RPCError(.unimplemented, "unknown method \"\(request.method)\" (this server serves: \(known))"))
            }
            if deadline.hasPassed {
                return .refuse(RPCError(.deadlineExceeded, "the deadline of \(request.method) passed before the server read it (\(deadline)); the work was not started"))
            }
            guard state.inFlight < configuration.maxConcurrentRequests else {
                return .refuse(RPCError(.resourceExhausted, "the server is busy: \(state.inFlight) requests in flight, the limit is \(configuration.maxConcurrentRequests); retry later"))
            }
            state.inFlight += 1
            return .run(handler)
        }
        switch admission {
        case .refuse(let error):
            logger.notice("refused", metadata: ["status": "\(error.code)", "error": "\(error.message)"])
            reply.status = error.status
            return (reply, false)
        case .run(let handler):
            logger.debug("request received", metadata: ["bytes": "\(request.payload.count)", "deadline": "\(deadline)"])
            let start = ContinuousClock.now
            let context = RPCCallContext(method: request.method, requestID: request.requestID,
                                         attempt: request.attempt, deadline: deadline,
                                         traceID: request.traceID, logger: logger)
            let result = await invoke(handler, [UInt8](request.payload), context, loop: loop)
            let elapsed = ContinuousClock.now - start
            switch result {
            case .success(let payload):
                reply.status.code = .ok
                reply.payload = Data(payload)
                logger.debug("request done", metadata: ["status": "OK", "elapsed": "\(elapsed)"])
            case .failure(let error):
                reply.status = error.status
                logger.notice("request failed", metadata: ["status": "\(error.code)", "error": "\(error.message)",
                                                           "elapsed": "\(elapsed)"])
            }
            return (reply, true)
        }
    }

    /// Runs a handler on the loop's task, which the watchdog cancels if the deadline passes.
    private func invoke(_ handler: @escaping RawHandler, _ payload: [UInt8],
                        _ context: RPCCallContext, loop: Task<Void, Never>?) async -> Result<[UInt8], RPCError> {
        let watch = loop.map { loop in watchdog.watch(context.deadline) { loop.cancel() } } ?? 0
        let result: Result<[UInt8], RPCError>
        do {
            result = .success(try await handler(payload, context))
        } catch {
            result = .failure(RPCError.from(error))
        }
        watchdog.unwatch(watch)
        if case .failure = result {
            if context.deadline.hasPassed {
                return .failure(RPCError(.deadlineExceeded, "\(context.method) did not finish before its deadline (\(context.deadline)); the work was cancelled"))
            }
            if Task.isCancelled {
                return .failure(RPCError(.unavailable, "the server stopped before \(context.method) finished; the work was cancelled; retry"))
            }
        }
        return result
    }

    /// "tcp://host:0" with the port the listener got; other URLs as they are.
    private static func boundURL(_ url: String, listener: nng_listener) -> String {
        guard url.hasPrefix("tcp://") || url.hasPrefix("tcp4://") || url.hasPrefix("tcp6://") else { return url }
        var port: Int32 = 0
        guard gemma_nng_listener_tcp_port(listener, &port) == 0,
              let colon = url.lastIndex(of: ":"), url[url.index(after: colon)...].allSatisfy(\.isNumber)
        else { return url }
        return String(url[..<colon]) + ":\(port)"
    }
}

/// The mutable part of a server, behind one lock.
private final class ServerState: @unchecked Sendable {
    struct Fields {
        var handlers: [String: RPCServer.RawHandler] = [:]
        var socket: NNGSocket?
        var boundURLs: [String] = []
        var contexts: [NNGContext] = []
        /// The loops serving the contexts, by id.
        var loops: [Int: Task<Void, Never>] = [:]
        var nextLoopID = 0
        /// No loop is started any more.
        var stopping = false
        var inFlight = 0
        var draining = false
    }

    private let lock = NSLock()
    private var fields = Fields()

    func withLock<T>(_ body: (inout Fields) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&fields)
    }
}

/// A one-shot signal that tasks can wait for; waiting ends early when the task is cancelled.
private final class ShutdownSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var fired = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func fire() {
        lock.lock()
        fired = true
        let waiting = waiters
        waiters = []
        lock.unlock()
        for waiter in waiting { waiter.resume() }
    }

    /// Returns once `fire()` was called or the task is cancelled.
    func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                lock.lock()
                if fired || Task.isCancelled {
                    lock.unlock()
                    continuation.resume()
                    return
                }
                waiters.append(continuation)
                lock.unlock()
            }
        } onCancel: {
            self.releaseWaiters()
        }
    }

    private func releaseWaiters() {
        lock.lock()
        let waiting = waiters
        waiters = []
        lock.unlock()
        for waiter in waiting { waiter.resume() }
    }
}
