import Foundation
@testable import GemmaWire
import XCTest

/// A raw REQ socket for sending arbitrary bytes (malformed envelopes, garbage).
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

/// The envelope of a call, serialized.
public func envelope(method: String, payload: [UInt8], requestID: UInt64 = 7, deadline: RPCDeadline = .after(.seconds(5)),
                     attempt: UInt32 = 1) -> [UInt8] {
    var request = Gemma_V1_Request()
    request.method = method
    request.requestID = requestID
    request.deadlineUnixMicros = deadline.unixMicros
    request.attempt = attempt
    request.payload = Data(payload)
    return try! request.serializedBytes()
}

extension XCTestCase {
    /// Asserts that `body` throws an `RPCError` with `code` (whose message contains `text`),
    /// and returns it.
    @discardableResult
    public func assertRPCError<T>(_ code: RPCStatusCode, containing text: String = "", file: StaticString = #filePath,
                                  line: UInt = #line, _ body: () async throws -> T) async -> RPCError? {
        do {
            _ = try await body()
            XCTFail("expected \(code), got a result", file: file, line: line)
            return nil
        } catch let error as RPCError {
            XCTAssertEqual(error.code, code, error.message, file: file, line: line)
            XCTAssertFalse(error.message.isEmpty, "an error without a message", file: file, line: line)
            if !text.isEmpty {
                XCTAssertTrue(error.message.contains(text), "'\(error.message)' does not name '\(text)'", file: file, line: line)
            }
            return error
        } catch {
            XCTFail("expected RPCError \(code), got \(error)", file: file, line: line)
            return nil
        }
    }
}
