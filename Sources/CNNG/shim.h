#ifndef GEMMA_CNNG_SHIM_H
#define GEMMA_CNNG_SHIM_H

// nng (Debian's libnng-dev 1.5) for Swift: the library's headers, plus static inline helpers
// for what Swift cannot spell directly (string-macro option names used with typed setters,
// NNG_FLAG_NONBLOCK dials, copying bytes in and out of messages in one call).

#include <stdint.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

/// Largest message a socket accepts; larger ones are dropped and their connection closed.
static inline int gemma_nng_set_recv_max_size(nng_socket s, size_t bytes) {
    return nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, bytes);
}

/// Turns off REQ's automatic resend timer (NNG_OPT_REQ_RESENDTIME = NNG_DURATION_INFINITE).
static inline int gemma_nng_req_disable_resend(nng_socket s) {
    return nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
}

/// The same, for one context (contexts copy the socket's value when opened).
static inline int gemma_nng_ctx_disable_resend(nng_ctx c) {
    return nng_ctx_set_ms(c, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
}

/// How soon, and at most how long apart, a dialer tries to reconnect.
static inline int gemma_nng_set_reconnect(nng_socket s, nng_duration min, nng_duration max) {
    int rv = nng_socket_set_ms(s, NNG_OPT_RECONNMINT, min);
    return rv != 0 ? rv : nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, max);
}

/// Starts a dialer that connects in the background and reconnects whenever the connection
/// is lost: the call returns at once even when nothing listens at `url` yet.
static inline int gemma_nng_dial_nonblocking(nng_socket s, const char *url, nng_dialer *dialer) {
    return nng_dial(s, url, dialer, NNG_FLAG_NONBLOCK);
}

/// The TCP port a started listener is bound to (useful after listening on port 0).
static inline int gemma_nng_listener_tcp_port(nng_listener l, int *port) {
    return nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, port);
}

/// A new message holding a copy of `len` bytes.
static inline int gemma_nng_msg_from_bytes(nng_msg **msg, const void *bytes, size_t len) {
    int rv = nng_msg_alloc(msg, len);
    if (rv == 0 && len > 0) {
        memcpy(nng_msg_body(*msg), bytes, len);
    }
    return rv;
}

/// Detaches the message a completed receive left on `aio` (NULL if none); the caller owns it.
static inline nng_msg *gemma_nng_aio_take_msg(nng_aio *aio) {
    nng_msg *msg = nng_aio_get_msg(aio);
    nng_aio_set_msg(aio, NULL);
    return msg;
}

#endif
