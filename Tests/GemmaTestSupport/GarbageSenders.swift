import Foundation
import GemmaWire
import XCTest

/// Sends malformed calls to a service until `end`, in turn: random bytes, a real envelope
/// (method `methods[0]` around `validPayload`) cut short, a real envelope around a random
/// payload, and a message over `limit` bytes (which must go unanswered). Every other message
/// must be answered with a status that has a message. Returns the count of each status.
public func sendGarbageEnvelopes(url: String, methods: [String], validPayload: [UInt8], limit: Int,
                                 until end: ContinuousClock.Instant, seed: UInt64) async throws -> [RPCStatusCode: Int] {
    var random = SplitMix64(seed: seed)
    let requester = try RawRequester(url: url)
    // Closed on a thread of its own: nng_close of this socket (after timed-out exchanges and
    // oversized messages the service dropped) was seen to hang once. nng 1.5.2 (Debian's) has
    // known nng_close deadlocks (nanomsg/nng#1543, #1813, #1827: a reap waits for a pipe or an
    // aio task that never finishes; fixed in nng 1.8.0-1.9.0); a hung close must not hang the test.
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
            let whole = envelope(method: methods[0], payload: validPayload)
            message = Array(whole.prefix(Int(random.next() % UInt64(whole.count))))
        case 2:  // a real envelope around a random payload
            message = envelope(method: methods[Int(random.next() % UInt64(methods.count))], payload: random.bytes(Int(random.next() % 512)))
        default:  // over the service's message limit: dropped, never answered
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
}

/// Opens TCP connections to 127.0.0.1:`port` until `end`, each writing garbage below the RPC
/// layer: no protocol header, a REQ header with an absurd frame length, or a frame just over
/// `limit` cut short. Returns how many connections it made.
public func sendGarbageConnections(port: Int, limit: Int, until end: ContinuousClock.Instant, seed: UInt64) async -> Int {
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
}
