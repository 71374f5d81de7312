import Foundation
import GemmaWire
import XCTest

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
