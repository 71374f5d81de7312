import CNNG
import Foundation

/// An nng socket (REQ or REP), closed once, explicitly or when the last reference goes.
///
/// Calls on its contexts go through `whileOpen`, which `close()` excludes: nng 1.5 can free a
/// socket's protocol state while a context call that started before `nng_close` is still
/// finishing (the context's release wakes the closer before it is done), so no context call
/// may overlap the close.
final class NNGSocket: @unchecked Sendable {
    enum Kind: String { case request = "req0", reply = "rep0" }

    let handle: nng_socket
    let kind: Kind
    /// The connections of a request socket (nil on a reply socket).
    let connections: ConnectionMonitor?
    private let usage = ReadWriteLock()
    /// Guarded by `usage` (written under its write lock).
    private var closed = false

    /// Opens a socket that accepts messages of at most `maxMessageBytes` (nng drops larger
    /// ones and closes their connection).
    init(_ kind: Kind, maxMessageBytes: Int) throws(NNGError) {
        var socket = nng_socket()
        switch kind {
        case .request: try nngCheck(nng_req0_open(&socket), "nng_req0_open")
        case .reply: try nngCheck(nng_rep0_open(&socket), "nng_rep0_open")
        }
        self.handle = socket
        self.kind = kind
        connections = kind == .request ? ConnectionMonitor() : nil
        do {
            try nngCheck(gemma_nng_set_recv_max_size(socket, maxMessageBytes), "set NNG_OPT_RECVMAXSZ")
            if kind == .request {
                // Our client retries within the deadline itself, counting attempts.
                try nngCheck(gemma_nng_req_disable_resend(socket), "set NNG_OPT_REQ_RESENDTIME")
            }
            try connections?.attach(to: socket)
        } catch {
            nng_close(socket)
            throw error
        }
    }

    /// Sets how soon and how often dialers retry a lost or refused connection.
    func setReconnect(minimum: Duration, maximum: Duration) throws(NNGError) {
        try nngCheck(gemma_nng_set_reconnect(handle, nngMilliseconds(minimum), nngMilliseconds(maximum)),
                     "set NNG_OPT_RECONNMINT/MAXT")
    }

    /// Connects to `url` in the background, and again whenever the connection is lost;
    /// returns at once even when nothing listens there yet.
    func dial(_ url: String) throws(NNGError) {
        try nngCheck(gemma_nng_dial_nonblocking(handle, url, nil), "nng_dial \(url)")
    }

    /// Starts listening on `url`; returns the listener, to close it or read its port.
    func listen(_ url: String) throws(NNGError) -> nng_listener {
        var listener = nng_listener()
        try nngCheck(nng_listener_create(&listener, handle, url), "nng_listener_create \(url)")
        do {
            try nngCheck(nng_listener_start(listener, 0), "nng_listener_start \(url)")
        } catch {
            nng_listener_close(listener)
            throw error
        }
        return listener
    }

    /// Closes the socket: pending operations on it and its contexts end with `NNG_ECLOSED`.
    /// Waits for context calls in progress; blocks briefly; never call it from an aio callback.
    func close() {
        usage.lockForWriting()
        defer { usage.unlock() }
        guard !closed else { return }
        closed = true
        nng_close(handle)
    }

    /// Runs `body` (a call on one of the socket's contexts) unless the socket is closed;
    /// `close()` waits until no such call runs.
    func whileOpen<T>(_ body: () -> T) -> T? {
        usage.lockForReading()
        defer { usage.unlock() }
        return closed ? nil : body()
    }

    var isClosed: Bool {
        whileOpen { false } ?? true
    }

    deinit { close() }
}

/// One nng context on a socket with its own aio: an independent request/reply exchange, so
/// one socket carries many concurrent calls.
final class NNGContext: @unchecked Sendable {
    let context: nng_ctx
    private let aio: AsyncAIO
    /// Keeps the socket open while the context lives.
    let socket: NNGSocket

    init(socket: NNGSocket) throws(NNGError) {
        var context = nng_ctx()
        let opened: Int32 = socket.whileOpen {
            var rv = nng_ctx_open(&context, socket.handle)
            if rv == 0 && socket.kind == .request {
                rv = gemma_nng_ctx_disable_resend(context)
                if rv != 0 { nng_ctx_close(context) }
            }
            return rv
        } ?? NNGError.closed
        try nngCheck(opened, "nng_ctx_open")
        do {
            self.aio = try AsyncAIO()
        } catch {
            _ = socket.whileOpen { nng_ctx_close(context) }
            throw error
        }
        self.context = context
        self.socket = socket
    }

    deinit {
        // A closed socket has closed its contexts already.
        _ = socket.whileOpen { nng_ctx_close(context) }
    }

    /// Sends `bytes` as one message; returns nng's result (the message is freed on failure).
    func send(_ bytes: [UInt8], timeout: nng_duration) async -> Int32 {
        var message: OpaquePointer?
        let allocated = bytes.withUnsafeBytes { gemma_nng_msg_from_bytes(&message, $0.baseAddress, $0.count) }
        guard allocated == 0, let message else { return allocated }
        nng_aio_set_msg(aio.handle, message)
        let context = self.context
        let socket = self.socket
        let result = await aio.perform(timeout: timeout) { aio in
            socket.whileOpen { nng_ctx_send(context, aio) } != nil
        }
        if result != 0, let unsent = gemma_nng_aio_take_msg(aio.handle) {
            nng_msg_free(unsent)
        }
        return result
    }

    /// Cancels the operation in progress (it ends with `NNG_ECANCELED`).
    func cancel() {
        aio.cancel()
    }

    /// Receives one message; on failure returns nng's result.
    func receive(timeout: nng_duration) async -> Result<[UInt8], NNGError> {
        let context = self.context
        let socket = self.socket
        let result = await aio.perform(timeout: timeout) { aio in
            socket.whileOpen { nng_ctx_recv(context, aio) } != nil
        }
        guard result == 0 else { return .failure(NNGError(operation: "nng_ctx_recv", code: result)) }
        guard let message = gemma_nng_aio_take_msg(aio.handle) else {
            return .failure(NNGError(operation: "nng_ctx_recv (no message)", code: Int32(NNG_EINTERNAL.rawValue)))
        }
        defer { nng_msg_free(message) }
        let length = nng_msg_len(message)
        guard length > 0, let body = nng_msg_body(message) else { return .success([]) }
        return .success([UInt8](UnsafeRawBufferPointer(start: body, count: length)))
    }
}

/// A pthread read-write lock: many readers at once, or one writer.
final class ReadWriteLock: @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    init() {
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_rwlock_t())
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        // A waiting writer (close) goes before new readers, so a busy socket still closes.
        pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        pthread_rwlock_init(lock, &attributes)
        pthread_rwlockattr_destroy(&attributes)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func lockForReading() { pthread_rwlock_rdlock(lock) }
    func lockForWriting() { pthread_rwlock_wrlock(lock) }
    func unlock() { pthread_rwlock_unlock(lock) }
}
