import CNNG
import Dispatch
import Foundation

/// Follows a socket's connections through nng's pipe events, so that a client learns at once
/// that its server went away (the kernel closed the connection) instead of waiting for a
/// deadline: observers hear when the last connection closes and when one comes back.
///
/// nng calls `pipeEvent` on its own threads; observers run on a dispatch queue, never there.
final class ConnectionMonitor: @unchecked Sendable {
    private let lock = NSLock()
    private var pipes = Set<UInt32>()
    private var everConnected = false
    private var observers: [@Sendable (Bool) -> Void] = []
    private let queue = DispatchQueue(label: "gemma.wire.connection-monitor")

    /// Registers for the socket's pipe events. The monitor must live as long as the socket
    /// (the socket holds it).
    func attach(to socket: nng_socket) throws(NNGError) {
        let argument = Unmanaged.passUnretained(self).toOpaque()
        try nngCheck(nng_pipe_notify(socket, NNG_PIPE_EV_ADD_POST, connectionMonitorCallback, argument),
                     "nng_pipe_notify ADD_POST")
        try nngCheck(nng_pipe_notify(socket, NNG_PIPE_EV_REM_POST, connectionMonitorCallback, argument),
                     "nng_pipe_notify REM_POST")
    }

    /// Whether at least one connection is up.
    var isConnected: Bool {
        lock.lock()
        defer { lock.unlock() }
        return !pipes.isEmpty
    }

    /// Whether the socket had a connection and has none now (its server went away).
    var isLost: Bool {
        lock.lock()
        defer { lock.unlock() }
        return pipes.isEmpty && everConnected
    }

    /// Calls `observer(false)` whenever the last connection closes and `observer(true)` when
    /// the first one opens again (or for the first time).
    func observe(_ observer: @escaping @Sendable (Bool) -> Void) {
        lock.lock()
        observers.append(observer)
        lock.unlock()
    }

    fileprivate func pipeEvent(_ pipe: UInt32, added: Bool) {
        lock.lock()
        let wasConnected = !pipes.isEmpty
        if added {
            pipes.insert(pipe)
            everConnected = true
        } else {
            pipes.remove(pipe)
        }
        let connected = !pipes.isEmpty
        let toNotify = connected != wasConnected ? observers : []
        lock.unlock()
        guard !toNotify.isEmpty else { return }
        queue.async {
            for observer in toNotify { observer(connected) }
        }
    }
}

/// nng's pipe callback: records the event and returns at once.
private func connectionMonitorCallback(_ pipe: nng_pipe, _ event: nng_pipe_ev, _ argument: UnsafeMutableRawPointer?) {
    guard let argument else { return }
    let monitor = Unmanaged<ConnectionMonitor>.fromOpaque(argument).takeUnretainedValue()
    monitor.pipeEvent(pipe.id, added: event == NNG_PIPE_EV_ADD_POST)
}
