import Foundation
import GemmaTokenizer
@testable import GemmaWire
import Logging
import XCTest

/// Paths, addresses and helpers shared by the wire tests.
enum WireFixtures {
    /// The package's root folder, found from this file's location.
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // GemmaWireTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    /// The committed test tokenizer.
    static let tokenizerModelPath = packageRoot.appendingPathComponent("Tests/Fixtures/tokenizer/test-tokenizer.model").path

    static let tokenizer: GemmaTokenizer = {
        do {
            return try GemmaTokenizer(contentsOf: tokenizerModelPath)
        } catch {
            fatalError("cannot load the test tokenizer: \(error)")
        }
    }()

    private static let counter = Counter()

    /// A fresh ipc:// address in the temporary folder.
    static func ipcURL(_ name: String) -> String {
        "ipc://\(NSTemporaryDirectory())gemma-wire-\(getpid())-\(name)-\(counter.next()).ipc"
    }

    /// A fresh inproc:// address.
    static func inprocURL(_ name: String) -> String {
        "inproc://gemma-wire-\(name)-\(counter.next())"
    }

    /// A logger that keeps test output quiet (warnings and worse).
    static func logger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = .warning
        return logger
    }

    /// A test method: texts in, their UTF-8 lengths out (as ids).
    static let lengths = RPCMethod<Gemma_V1_EncodeRequest, Gemma_V1_EncodeReply>("test.v1.Lengths/Measure")

    static func lengthsRequest(_ texts: [String]) -> Gemma_V1_EncodeRequest {
        var request = Gemma_V1_EncodeRequest()
        request.texts = texts
        return request
    }

    static func lengthsReply(_ request: Gemma_V1_EncodeRequest) -> Gemma_V1_EncodeReply {
        var reply = Gemma_V1_EncodeReply()
        reply.sequences = request.texts.map { text in
            var ids = Gemma_V1_TokenIds()
            ids.ids = [Int32(text.utf8.count)]
            return ids
        }
        return reply
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    func next() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value
    }

    var current: Int {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
}

/// Counts handlers running at once, and the most seen.
final class ConcurrencyProbe: @unchecked Sendable {
    private let lock = NSLock()
    private var running = 0
    private(set) var maximum = 0

    func enter() {
        lock.lock()
        running += 1
        maximum = max(maximum, running)
        lock.unlock()
    }

    func leave() {
        lock.lock()
        running -= 1
        lock.unlock()
    }

    var highest: Int {
        lock.lock()
        defer { lock.unlock() }
        return maximum
    }
}

/// Handlers wait at the gate until the test opens it; the test can wait until N arrived.
final class Gate: @unchecked Sendable {
    private let lock = NSLock()
    private var isOpen = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var arrivals = 0

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            lock.lock()
            arrivals += 1
            if isOpen {
                lock.unlock()
                continuation.resume()
            } else {
                waiters.append(continuation)
                lock.unlock()
            }
        }
    }

    func open() {
        lock.lock()
        isOpen = true
        let waiting = waiters
        waiters = []
        lock.unlock()
        for waiter in waiting { waiter.resume() }
    }

    var arrived: Int {
        lock.lock()
        defer { lock.unlock() }
        return arrivals
    }
}

struct TimedOut: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Waits (polling, at most `timeout`) until `condition` holds.
func waitUntil(_ what: String, timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    let giveUp = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < giveUp else { throw TimedOut(what: what) }
        try await Task.sleep(for: .milliseconds(5))
    }
}

/// An RPCServer running in a task of the test.
final class RunningServer: @unchecked Sendable {
    let server: RPCServer
    let task: Task<Void, Error>

    /// Starts a server at `url` with the handlers `register` adds.
    init(url: String, configuration: RPCServer.Configuration = .init(),
         register: (RPCServer) -> Void) throws {
        let server = RPCServer(url: url, configuration: configuration, logger: WireFixtures.logger("test.server"))
        register(server)
        try server.start()
        self.server = server
        self.task = Task { try await server.run() }
    }

    /// The address to dial (with the real port for tcp://...:0).
    var url: String { server.boundURLs[0] }

    /// Stops at once (task cancellation) and waits until it has.
    func stop() async {
        task.cancel()
        _ = await task.result
    }

    /// Stops gracefully and waits until it has.
    func stopGracefully() async {
        server.shutdownGracefully()
        _ = await task.result
    }
}

/// A raw REQ socket for sending arbitrary bytes (malformed envelopes, garbage).
final class RawRequester: @unchecked Sendable {
    let socket: NNGSocket
    private let context: NNGContext

    init(url: String, maxMessageBytes: Int = 256 << 20) throws {
        socket = try NNGSocket(.request, maxMessageBytes: maxMessageBytes)
        try socket.setReconnect(minimum: .milliseconds(10), maximum: .milliseconds(200))
        try socket.dial(url)
        context = try NNGContext(socket: socket)
    }

    /// Sends `bytes` and waits at most `timeout` for the reply.
    func exchange(_ bytes: [UInt8], timeout: Duration) async -> Result<[UInt8], NNGError> {
        let milliseconds = nngMilliseconds(timeout)
        let sent = await context.send(bytes, timeout: milliseconds)
        guard sent == 0 else { return .failure(NNGError(operation: "send", code: sent)) }
        return await context.receive(timeout: milliseconds)
    }

    /// Sends `bytes` and decodes the reply envelope.
    func reply(to bytes: [UInt8], timeout: Duration = .seconds(5)) async throws -> Gemma_V1_Reply {
        switch await exchange(bytes, timeout: timeout) {
        case .success(let reply): return try Gemma_V1_Reply(serializedBytes: reply)
        case .failure(let error): throw error
        }
    }

    func close() { socket.close() }
}

/// The envelope of a call, serialized.
func envelope(method: String, payload: [UInt8], requestID: UInt64 = 7, deadline: RPCDeadline = .after(.seconds(5)),
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
    /// Asserts that `body` throws an `RPCError` with `code`, and returns it.
    @discardableResult
    func assertRPCError<T>(_ code: RPCStatusCode, file: StaticString = #filePath, line: UInt = #line,
                           _ body: () async throws -> T) async -> RPCError? {
        do {
            _ = try await body()
            XCTFail("expected \(code), got a result", file: file, line: line)
            return nil
        } catch let error as RPCError {
            XCTAssertEqual(error.code, code, error.message, file: file, line: line)
            XCTAssertFalse(error.message.isEmpty, "an error without a message", file: file, line: line)
            return error
        } catch {
            XCTFail("expected RPCError \(code), got \(error)", file: file, line: line)
            return nil
        }
    }
}
