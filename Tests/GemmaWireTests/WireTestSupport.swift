import Foundation
import GemmaTokenizer
@testable import GemmaWire
import Logging
import GemmaTestSupport
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
