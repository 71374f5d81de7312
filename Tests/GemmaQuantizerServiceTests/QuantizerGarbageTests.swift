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

        async let envelopeReplies = sendGarbageEnvelopes(
            url: url, methods: methods,
            validPayload: try QuantizerFixtures.request("cut", "tiny-mqa", "cut.gguf").serializedBytes(),
            limit: limit, until: end, seed: seed)
        async let rawConnections = sendGarbageConnections(port: port, limit: limit, until: end, seed: seed)

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
