import Foundation
@testable import GemmaQuantizerService
@testable import GemmaWire
import XCTest

/// Garbage sent to the quantizer service's port (as GemmaWireTests sends the tokenizer's)
/// never stops it nor disturbs a good client.
final class QuantizerGarbageTests: XCTestCase {
    func testGarbageNeverStopsTheService() async throws {
        let limit = 1 << 20
        let service = try QuantizerHarness(url: "tcp://127.0.0.1:0", configuration: .init(threadsPerJob: 2), maxMessageBytes: limit)
        addTeardownBlock {
            await service.stop()
            try? FileManager.default.removeItem(at: service.directory)
        }
        let done = try await RemoteConversion(client: service.client, pollInterval: .milliseconds(20))
            .run(QuantizerFixtures.request("known", "tiny-mqa", "known.gguf"))
        XCTAssertEqual(done.state, .succeeded, done.error)

        let url = service.server.boundURLs[0]
        let port = try XCTUnwrap(Int(url.split(separator: ":").last ?? ""))
        let end = ContinuousClock.now + .seconds(3)
        let seed = UInt64.random(in: 1 ... UInt64.max)
        let methods = [QuantizerRPC.submitJob.name, QuantizerRPC.jobStatus.name, QuantizerRPC.cancelJob.name, QuantizerRPC.listJobs.name]

        async let goodCalls: (ok: Int, failures: [String]) = {
            var ok = 0
            var failures: [String] = []
            while ContinuousClock.now < end {
                do {
                    let job = try await service.status("known")
                    let jobs = try await service.list()
                    if job.state == .succeeded && jobs.first?.jobID == "known" { ok += 1 } else { failures.append("\(job) \(jobs)") }
                } catch {
                    failures.append("\(error)")
                }
            }
            return (ok, failures)
        }()

        async let envelopeReplies: [RPCStatusCode: Int] = {
            var random = SplitMix64(seed: seed)
            let requester = try RawRequester(url: url)
            defer { requester.close() }
            var replies: [RPCStatusCode: Int] = [:]
            var round = 0
            while ContinuousClock.now < end {
                let message: [UInt8]
                var expectReply = true
                switch round % 4 {
                case 0:  // random bytes
                    message = random.bytes(Int(random.next() % 2048))
                case 1:  // a real envelope cut short
                    let payload = QuantizerFixtures.request("cut", "tiny-mqa", "cut.gguf")
                    let whole = envelope(method: methods[0], payload: try payload.serializedBytes())
                    message = Array(whole.prefix(Int(random.next() % UInt64(whole.count))))
                case 2:  // a real envelope around a random payload
                    message = envelope(method: methods[Int(random.next() % 4)], payload: random.bytes(Int(random.next() % 512)))
                default:  // over the message limit: dropped, never answered
                    message = random.bytes(limit + 1 + Int(random.next() % 4096))
                    expectReply = false
                }
                switch await requester.exchange(message, timeout: .milliseconds(expectReply ? 5000 : 200)) {
                case .success(let bytes):
                    XCTAssertTrue(expectReply, "an oversized message was answered")
                    let reply = try Gemma_V1_Reply(serializedBytes: bytes)
                    replies[reply.status.code, default: 0] += 1
                    if reply.status.code != .ok {
                        XCTAssertFalse(reply.status.message.isEmpty, "error \(reply.status.code) without a message")
                    }
                case .failure(let error):
                    XCTAssertFalse(expectReply, "no reply to a malformed message (round \(round), seed \(seed)): \(error)")
                }
                round += 1
            }
            return replies
        }()

        async let rawConnections: Int = {
            var random = SplitMix64(seed: seed ^ 0x5555)
            var count = 0
            while ContinuousClock.now < end {
                var bytes: [UInt8]
                switch count % 3 {
                case 0:  // not even the protocol header
                    bytes = random.bytes(Int(random.next() % 4096))
                case 1:  // a REQ header, then a frame claiming an absurd length
                    bytes = [0, 0x53, 0x50, 0, 0, 0x30, 0, 0] + [0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF] + random.bytes(64)
                default:  // a REQ header, then a frame just over the limit, cut short
                    let length = UInt64(limit + 1)
                    bytes = [0, 0x53, 0x50, 0, 0, 0x30, 0, 0] + (0 ..< 8).map { UInt8(truncatingIfNeeded: length >> (56 - 8 * UInt64($0))) }
                    bytes += random.bytes(8192)
                }
                await sendOverTCP(port: port, bytes)
                count += 1
            }
            return count
        }()

        let (good, replies, connections) = try await (goodCalls, envelopeReplies, rawConnections)
        XCTAssertEqual(good.failures, [], "seed \(seed)")
        XCTAssertGreaterThan(good.ok, 10, "the good client barely got through")
        XCTAssertGreaterThan(replies[.invalidArgument, default: 0], 0, "no INVALID_ARGUMENT replies: \(replies)")
        XCTAssertGreaterThan(connections, 10)

        // Still converting, and no job came from the garbage.
        let after = try await RemoteConversion(client: service.client, pollInterval: .milliseconds(20))
            .run(QuantizerFixtures.request("after", "tiny-mqa", "after.gguf"))
        XCTAssertEqual(after.state, .succeeded, after.error)
        let jobs = try await service.list()
        XCTAssertEqual(jobs.map(\.jobID), ["known", "after"], "seed \(seed)")
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

    func close() { socket.close() }
}

/// The envelope of a call, serialized.
func envelope(method: String, payload: [UInt8], requestID: UInt64 = 7, deadline: RPCDeadline = .after(.seconds(5))) -> [UInt8] {
    var request = Gemma_V1_Request()
    request.method = method
    request.requestID = requestID
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
