import Foundation
@testable import GemmaWire
import XCTest

/// The built `gemma-shard` binary: it starts, serves, survives garbage and exits 0 on SIGTERM.
final class ShardProcessTests: XCTestCase {
    private func start(_ arguments: [String]) async throws -> ShardProcess {
        let process = try ShardProcess(arguments: arguments)
        addTeardownBlock { process.stop() }
        try await process.waitUntilListening()
        return process
    }

    func testStartsAnswersInfoAndExitsZeroOnSIGTERM() async throws {
        let shard = try await start(["--model", ShardFixtures.tinyMQA, "--layers", "1-3",
                                     "--listen", ShardFixtures.ipcURL("process"), "--kv-cache-bytes", "2M"])
        let client = try RPCClient(url: shard.urls[0])
        defer { client.close() }
        let info = try await client.call(ShardRPC.info, Gemma_V1_ShardInfoRequest(), timeout: .seconds(10))
        XCTAssertEqual([info.firstLayer, info.endLayer, info.layerCount], [1, 3, 3])
        XCTAssertEqual([info.isFirst, info.isLast], [false, true])
        XCTAssertEqual(info.kvCapacityBytes, 2 << 20)
        XCTAssertEqual(info.modelFingerprint.count, 64)
        let log = shard.log.text
        XCTAssertTrue(log.contains("loaded model"), log)
        XCTAssertTrue(log.contains("fingerprint=\(info.modelFingerprint)"), log)

        shard.signal(SIGTERM)
        let status = try await shard.waitForExit()
        XCTAssertEqual(status, 0, shard.log.text)
    }

    func testBadArgumentsFailWithAMessage() async throws {
        for (arguments, expected) in [
            (["--model", ShardFixtures.tinyMQA, "--layers", "2-1", "--listen", "inproc://x"], "--layers"),
            (["--model", ShardFixtures.tinyMQA, "--layers", "0-9", "--listen", "inproc://x"], "0-3"),
            (["--model", ShardFixtures.tinyMQA, "--kv-cache-bytes", "lots", "--listen", "inproc://x"], "--kv-cache-bytes"),
            (["--model", "/nonexistent", "--listen", "inproc://x"], "/nonexistent"),
        ] {
            let process = try ShardProcess(arguments: arguments)
            let status = try await process.waitForExit()
            XCTAssertNotEqual(status, 0, "\(arguments)")
            XCTAssertTrue(process.log.text.contains(expected), "\(arguments): \(process.log.text)")
        }
    }

    func testGarbageDoesNotStopIt() async throws {
        let limit = 1 << 20
        let shard = try await start(["--model", ShardFixtures.tinyMQA, "--layers", "0-1", "--listen", "tcp://127.0.0.1:0",
                                     "--max-message-bytes", "\(limit)"])
        let url = shard.urls[0]
        let port = try XCTUnwrap(Int(url.split(separator: ":").last ?? ""))
        let seed = UInt64.random(in: 1 ... UInt64.max)
        var random = SplitMix64(seed: seed)

        let requester = try RawRequester(url: url)
        defer { requester.close() }
        var codes: [RPCStatusCode: Int] = [:]
        for round in 0 ..< 40 {
            let message: [UInt8]
            switch round % 3 {
            case 0:  // random bytes
                message = random.bytes(Int(random.next() % 2048))
            case 1:  // a Forward envelope around a random payload
                message = envelope(method: ShardRPC.forward.name, payload: random.bytes(Int(random.next() % 512)))
            default:  // a real Forward with a random hidden tensor, cut short
                var tensor = Gemma_V1_Tensor()
                tensor.dtype = .bf16
                tensor.shape = [random.next() % 4, random.next() % 100]
                tensor.data = Data(random.bytes(Int(random.next() % 300)))
                var request = Gemma_V1_ForwardRequest()
                request.segments = [wireSegment(random.next(), start: Int(random.next() % 300), hidden: tensor)]
                let whole = envelope(method: ShardRPC.forward.name, payload: try request.serializedBytes())
                message = Array(whole.prefix(Int(random.next() % UInt64(whole.count + 1))))
            }
            switch await requester.exchange(message, timeout: .seconds(10)) {
            case .success(let bytes):
                let reply = try Gemma_V1_Reply(serializedBytes: bytes)
                codes[reply.status.code, default: 0] += 1
                if reply.status.code != .ok {
                    XCTAssertFalse(reply.status.message.isEmpty, "\(reply.status.code) without a message")
                }
            case .failure(let error):
                XCTFail("no reply to a malformed message (round \(round), seed \(seed)): \(error)")
            }
        }
        XCTAssertGreaterThan(codes[.invalidArgument, default: 0], 0, "\(codes)")
        for count in 0 ..< 12 {
            var bytes: [UInt8]
            switch count % 3 {
            case 0: bytes = random.bytes(Int(random.next() % 4096))  // not even the protocol header
            case 1: bytes = [0, 0x53, 0x50, 0, 0, 0x30, 0, 0] + [0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF] + random.bytes(64)
            default: bytes = random.bytes(limit + 10)  // over the message limit
            }
            await sendOverTCP(port: port, bytes)
        }
        XCTAssertTrue(shard.process.isRunning, shard.log.text)

        // Still serving real work, and still stops cleanly.
        let client = try RPCClient(url: url)
        defer { client.close() }
        var request = Gemma_V1_ForwardRequest()
        request.segments = [wireSegment(1, start: 0, tokens: [2, 17, 301])]
        let reply = try await client.call(ShardRPC.forward, request, timeout: .seconds(10))
        guard case .hidden(let hidden) = reply.result else { return XCTFail("no hidden states") }
        XCTAssertEqual(hidden.shape, [3, 64])
        XCTAssertEqual(hidden.dtype, .bf16)
        shard.signal(SIGTERM)
        let status = try await shard.waitForExit()
        XCTAssertEqual(status, 0, shard.log.text)
    }
}

/// A `gemma-shard` process.
final class ShardProcess: @unchecked Sendable {
    let process: Process
    let log: OutputCollector
    private(set) var urls: [String] = []

    init(arguments: [String]) throws {
        process = Process()
        process.executableURL = try BuiltProducts.executable("gemma-shard")
        process.arguments = arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = errors
        log = OutputCollector(errors)
        try process.run()
    }

    /// Waits until it logs that it listens, and reads its URLs from that line.
    func waitUntilListening(timeout: Duration = .seconds(30)) async throws {
        let giveUp = ContinuousClock.now + timeout
        while !log.text.contains("] listening") {
            if !process.isRunning {
                throw ShardTestError("gemma-shard exited with \(process.terminationStatus):\n\(log.text)")
            }
            guard ContinuousClock.now < giveUp else { throw ShardTestError("gemma-shard did not listen:\n\(log.text)") }
            try await Task.sleep(for: .milliseconds(5))
        }
        let line = log.text.split(separator: "\n").first { $0.hasSuffix("] listening") } ?? ""
        let field = line.split(separator: " ").first { $0.hasPrefix("urls=") } ?? ""
        urls = field.dropFirst("urls=".count).split(separator: ",").map(String.init)
        XCTAssertFalse(urls.isEmpty, "no urls= in \(line)")
    }

    func signal(_ signal: Int32) {
        Glibc.kill(process.processIdentifier, signal)
    }

    func waitForExit(timeout: Duration = .seconds(30)) async throws -> Int32 {
        let giveUp = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < giveUp else {
                signal(SIGKILL)
                throw ShardTestError("gemma-shard did not exit:\n\(log.text)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        // Let the pipe deliver the last lines.
        try await Task.sleep(for: .milliseconds(20))
        return process.terminationStatus
    }

    func stop() {
        if process.isRunning {
            signal(SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// Built executables of this package, next to the test bundle (`swift build --build-tests`).
enum BuiltProducts {
    static var folder: URL {
        let bundle = Bundle.main.bundleURL
        for candidate in [bundle, bundle.deletingLastPathComponent()]
        where FileManager.default.isExecutableFile(atPath: candidate.appendingPathComponent("gemma-shard").path) {
            return candidate
        }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }

    static func executable(_ name: String) throws -> URL {
        let url = folder.appendingPathComponent(name)
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw XCTSkip("\(name) is not built next to the tests (\(folder.path)); run `swift build --build-tests` first")
        }
        return url
    }
}

/// Collects a pipe's output as it arrives.
final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()

    init(_ pipe: Pipe) {
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let chunk = handle.availableData
            if chunk.isEmpty {
                handle.readabilityHandler = nil
                return
            }
            self?.append(chunk)
        }
    }

    private func append(_ chunk: Data) {
        lock.withLock { data.append(chunk) }
    }

    var text: String {
        lock.withLock { String(decoding: data, as: UTF8.self) }
    }
}

/// A raw REQ socket for sending arbitrary bytes.
final class RawRequester: @unchecked Sendable {
    let socket: NNGSocket
    private let context: NNGContext

    init(url: String) throws {
        socket = try NNGSocket(.request, maxMessageBytes: 256 << 20)
        try socket.setReconnect(minimum: .milliseconds(10), maximum: .milliseconds(200))
        try socket.dial(url)
        context = try NNGContext(socket: socket)
    }

    func exchange(_ bytes: [UInt8], timeout: Duration) async -> Result<[UInt8], NNGError> {
        let milliseconds = nngMilliseconds(timeout)
        let sent = await context.send(bytes, timeout: milliseconds)
        guard sent == 0 else { return .failure(NNGError(operation: "send", code: sent)) }
        return await context.receive(timeout: milliseconds)
    }

    func close() { socket.close() }
}

/// The envelope of a call, serialized.
func envelope(method: String, payload: [UInt8], deadline: RPCDeadline = .after(.seconds(10))) -> [UInt8] {
    var request = Gemma_V1_Request()
    request.method = method
    request.requestID = 7
    request.deadlineUnixMicros = deadline.unixMicros
    request.attempt = 1
    request.payload = Data(payload)
    return try! request.serializedBytes()
}

/// Connects to 127.0.0.1:`port`, writes `bytes`, closes; on a background thread (blocking calls).
func sendOverTCP(port: Int, _ bytes: [UInt8]) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        DispatchQueue.global().async {
            defer { continuation.resume() }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return }
            defer { close(fd) }
            var timeout = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else { return }
            _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
    }
}

/// A small seeded generator, so a failing run can be repeated from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        (0 ..< count).map { _ in UInt8(truncatingIfNeeded: next()) }
    }
}
