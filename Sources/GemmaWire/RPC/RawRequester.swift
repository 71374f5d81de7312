import Foundation

/// A REQ socket that sends arbitrary bytes and returns the raw reply: for probing a service
/// with malformed envelopes and garbage (the robustness tests), not for calls (`RPCClient`).
public final class RawRequester: @unchecked Sendable {
    let socket: NNGSocket
    private let context: NNGContext

    public init(url: String, maxMessageBytes: Int = 256 << 20) throws {
        socket = try NNGSocket(.request, maxMessageBytes: maxMessageBytes)
        try socket.setReconnect(minimum: .milliseconds(10), maximum: .milliseconds(200))
        try socket.dial(url)
        context = try NNGContext(socket: socket)
    }

    /// Sends `bytes` and waits at most `timeout` for the reply.
    public func exchange(_ bytes: [UInt8], timeout: Duration) async -> Result<[UInt8], NNGError> {
        let milliseconds = nngMilliseconds(timeout)
        let sent = await context.send(bytes, timeout: milliseconds)
        guard sent == 0 else { return .failure(NNGError(operation: "send", code: sent)) }
        return await context.receive(timeout: milliseconds)
    }

    /// Sends `bytes` and decodes the reply envelope.
    public func reply(to bytes: [UInt8], timeout: Duration = .seconds(5)) async throws -> Gemma_V1_Reply {
        switch await exchange(bytes, timeout: timeout) {
        case .success(let reply): return try Gemma_V1_Reply(serializedBytes: reply)
        case .failure(let error): throw error
        }
    }

    public func close() { socket.close() }
}
