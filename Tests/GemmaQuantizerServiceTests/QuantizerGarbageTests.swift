import Foundation
@testable import GemmaQuantizerService
@testable import GemmaWire
import GemmaTestSupport
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
            // Closed on a thread of its own: with the service in this process, nng's close of a
            // socket that sent oversized messages may wait for the service's side of the pipe.
            defer { Thread { requester.close() }.start() }
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
