import CNNG
import Foundation

/// An nng socket (REQ or REP), closed once, explicitly or when the last reference goes.
final class NNGSocket: @unchecked Sendable {
    enum Kind: String { case request = "req0", reply = "rep0" }

    let handle: nng_socket
    let kind: Kind
    private let lock = NSLock()
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
        do {
            try nngCheck(gemma_nng_set_recv_max_size(socket, maxMessageBytes), "set NNG_OPT_RECVMAXSZ")
            if kind == .request {
                // Our client retries within the deadline itself, counting attempts.
                try nngCheck(gemma_nng_req_disable_resend(socket), "set NNG_OPT_REQ_RESENDTIME")
            }
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
    /// Blocks briefly; never call it from an aio callback.
    func close() {
        lock.lock()
        let wasOpen = !closed
        closed = true
        lock.unlock()
        if wasOpen { nng_close(handle) }
    }

    var isClosed: Bool {
        lock.lock()
        defer { lock.unlock() }
        return closed
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
        try nngCheck(nng_ctx_open(&context, socket.handle), "nng_ctx_open")
        if socket.kind == .request {
            try nngCheck(gemma_nng_ctx_disable_resend(context), "set NNG_OPT_REQ_RESENDTIME on a context")
        }
        do {
            self.aio = try AsyncAIO()
        } catch {
            nng_ctx_close(context)
            throw error
        }
        self.context = context
        self.socket = socket
    }

    deinit {
        nng_ctx_close(context)
    }

    /// Sends `bytes` as one message; returns nng's result (the message is freed on failure).
    func send(_ bytes: [UInt8], timeout: nng_duration) async -> Int32 {
        var message: OpaquePointer?
        let allocated = bytes.withUnsafeBytes { gemma_nng_msg_from_bytes(&message, $0.baseAddress, $0.count) }
        guard allocated == 0, let message else { return allocated }
        nng_aio_set_msg(aio.handle, message)
        let context = self.context
        let result = await aio.perform(timeout: timeout) { nng_ctx_send(context, $0) }
        if result != 0, let unsent = gemma_nng_aio_take_msg(aio.handle) {
            nng_msg_free(unsent)
        }
        return result
    }

    /// Receives one message; on failure returns nng's result.
    func receive(timeout: nng_duration) async -> Result<[UInt8], NNGError> {
        let context = self.context
        let result = await aio.perform(timeout: timeout) { nng_ctx_recv(context, $0) }
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
