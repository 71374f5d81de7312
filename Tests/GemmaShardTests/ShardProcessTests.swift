import Foundation
@testable import GemmaWire
import GemmaTestSupport
import XCTest

/// The built `gemma-shard` binary: it starts, serves, survives garbage and exits 0 on SIGTERM.
final class ShardProcessTests: XCTestCase {
    private func start(_ arguments: [String]) async throws -> ServiceProcess {
        let process = try ServiceProcess("gemma-shard", arguments)
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
            let process = try ServiceProcess("gemma-shard", arguments)
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
