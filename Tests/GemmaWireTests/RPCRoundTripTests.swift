import Foundation
@testable import GemmaWire
import GemmaTestSupport
import XCTest

/// Calls through RPCClient and RPCServer over each transport, and the envelope's semantics.
final class RPCRoundTripTests: XCTestCase {
    private func startLengthsServer(_ url: String, configuration: RPCServer.Configuration = .init(),
                                    seen: Counter? = nil) throws -> RunningServer {
        let running = try RunningServer(url: url, configuration: configuration) { server in
            server.register(WireFixtures.lengths) { request, context in
                XCTAssertEqual(context.method, WireFixtures.lengths.name)
                XCTAssertNotEqual(context.requestID, 0)
                XCTAssertGreaterThanOrEqual(context.attempt, 1)
                _ = seen?.next()
                return WireFixtures.lengthsReply(request)
            }
        }
        addTeardownBlock { await running.stop() }
        return running
    }

    private func assertRoundTrip(_ url: String) async throws {
        let running = try startLengthsServer(url)
        let client = try RPCClient(url: running.url)
        defer { client.close() }
        let texts = ["", "a", "héllo", String(repeating: "x", count: 100_000)]
        let reply = try await client.call(WireFixtures.lengths, WireFixtures.lengthsRequest(texts), timeout: .seconds(10))
        XCTAssertEqual(reply.sequences.map(\.ids), texts.map { [Int32($0.utf8.count)] })
    }

    func testRoundTripOverInproc() async throws {
        try await assertRoundTrip(WireFixtures.inprocURL("roundtrip"))
    }

    func testRoundTripOverIPC() async throws {
        try await assertRoundTrip(WireFixtures.ipcURL("roundtrip"))
    }

    func testRoundTripOverTCPLoopback() async throws {
        try await assertRoundTrip("tcp://127.0.0.1:0")
    }

    func testEnvelopeFieldsReachTheHandler() async throws {
        let seen = LockedBox<RPCCallContext?>(nil)
        let running = try RunningServer(url: WireFixtures.inprocURL("fields")) { server in
            server.register(WireFixtures.lengths) { request, context in
                seen.value = context
                return WireFixtures.lengthsReply(request)
            }
        }
        addTeardownBlock { await running.stop() }
        let client = try RPCClient(url: running.url)
        defer { client.close() }
        let deadline = RPCDeadline.after(.seconds(30))
        _ = try await client.call(WireFixtures.lengths, WireFixtures.lengthsRequest(["x"]), deadline: deadline, traceID: "trace-42")
        let context = try XCTUnwrap(seen.value)
        XCTAssertEqual(context.deadline, deadline)
        XCTAssertEqual(context.traceID, "trace-42")
        XCTAssertEqual(context.attempt, 1)
        XCTAssertEqual(context.method, "test.v1.Lengths/Measure")
    }

    func testManyConcurrentCallsShareOneSocket() async throws {
        let probe = ConcurrencyProbe()
        let running = try RunningServer(url: WireFixtures.ipcURL("concurrent"),
                                        configuration: .init(maxConcurrentRequests: 64)) { server in
            server.register(WireFixtures.lengths) { request, _ in
                probe.enter()
                defer { probe.leave() }
                try await Task.sleep(for: .milliseconds(10))
                return WireFixtures.lengthsReply(request)
            }
        }
        addTeardownBlock { await running.stop() }
        let client = try RPCClient(url: running.url)
        defer { client.close() }

        // 48 callers at once (under the server's limit of 64), 6 calls each, on one socket.
        let callers = 48, callsEach = 6
        let results = try await withThrowingTaskGroup(of: [(Int, [Int32])].self) { group in
            for caller in 0 ..< callers {
                group.addTask {
                    var results: [(Int, [Int32])] = []
                    for call in 0 ..< callsEach {
                        let index = caller * callsEach + call
                        let reply = try await client.call(WireFixtures.lengths,
                                                          WireFixtures.lengthsRequest([String(repeating: "z", count: index)]),
                                                          timeout: .seconds(30))
                        results.append((index, reply.sequences.first?.ids ?? []))
                    }
                    return results
                }
            }
            var results: [Int: [Int32]] = [:]
            for try await batch in group {
                for (index, ids) in batch { results[index] = ids }
            }
            return results
        }
        XCTAssertEqual(results.count, callers * callsEach)
        for index in 0 ..< callers * callsEach {
            XCTAssertEqual(results[index], [Int32(index)], "call \(index) got another call's reply")
        }
        XCTAssertGreaterThan(probe.highest, 1, "calls on one socket never overlapped")
    }

    func testClientGivesUpAtItsDeadline() async throws {
        let cancelled = Counter()
        let running = try RunningServer(url: WireFixtures.inprocURL("slow")) { server in
            server.register(WireFixtures.lengths) { request, _ in
                do {
                    try await Task.sleep(for: .seconds(30))
                } catch {
                    _ = cancelled.next()
                    throw error
                }
                return WireFixtures.lengthsReply(request)
            }
        }
        addTeardownBlock { await running.stop() }
        let client = try RPCClient(url: running.url)
        defer { client.close() }
        let start = ContinuousClock.now
        let error = await assertRPCError(.deadlineExceeded) {
            try await client.call(WireFixtures.lengths, WireFixtures.lengthsRequest(["x"]), timeout: .milliseconds(300))
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(10))
        XCTAssertTrue(error?.message.contains("test.v1.Lengths/Measure") ?? false, error?.message ?? "")
        // The server cancels the handler when the deadline it was given passes.
        try await waitUntil("the server to cancel the handler") { cancelled.current >= 1 }
    }

    func testServerDoesNotStartWorkWhoseDeadlinePassed() async throws {
        let calls = Counter()
        let running = try startLengthsServer(WireFixtures.inprocURL("expired"), seen: calls)
        let requester = try RawRequester(url: running.url)
        defer { requester.close() }
        let payload = try WireFixtures.lengthsRequest(["x"]).serializedBytes() as [UInt8]
        let expired = RPCDeadline(unixMicros: RPCDeadline.nowMicros() - 1_000_000)
        let reply = try await requester.reply(to: envelope(method: WireFixtures.lengths.name, payload: payload,
                                                           requestID: 99, deadline: expired))
        XCTAssertEqual(reply.requestID, 99)
        XCTAssertEqual(reply.status.code, .deadlineExceeded)
        XCTAssertTrue(reply.status.message.contains("deadline"), reply.status.message)
        XCTAssertEqual(calls.current, 0, "the handler ran for a request whose deadline had passed")
    }

    func testUnknownMethodIsUnimplemented() async throws {
        let running = try startLengthsServer(WireFixtures.inprocURL("unknown"))
        let client = try RPCClient(url: running.url)
        defer { client.close() }
        let error = await assertRPCError(.unimplemented) {
            try await client.callRaw("gemma.v1.Nothing/Here", payload: [], deadline: .after(.seconds(5)))
        }
        XCTAssertTrue(error?.message.contains("gemma.v1.Nothing/Here") ?? false, error?.message ?? "")
        XCTAssertTrue(error?.message.contains(WireFixtures.lengths.name) ?? false, "should list the served methods")
    }

    func testUndecodablePayloadIsInvalidArgument() async throws {
        let running = try startLengthsServer(WireFixtures.inprocURL("badpayload"))
        let client = try RPCClient(url: running.url)
        defer { client.close() }
        let error = await assertRPCError(.invalidArgument) {
            try await client.callRaw(WireFixtures.lengths.name, payload: [0xFF, 0xFF, 0xFF, 0xFF], deadline: .after(.seconds(5)))
        }
        XCTAssertTrue(error?.message.contains("gemma.v1.EncodeRequest") ?? false, error?.message ?? "")
    }

    func testUndecodableEnvelopeIsInvalidArgument() async throws {
        let running = try startLengthsServer(WireFixtures.inprocURL("badenvelope"))
        let requester = try RawRequester(url: running.url)
        defer { requester.close() }
        for garbage in [[0xFF, 0xFF, 0xFF], Array("not a protobuf".utf8), [0x0A, 0x80]] as [[UInt8]] {
            let reply = try await requester.reply(to: garbage)
            XCTAssertEqual(reply.status.code, .invalidArgument)
            XCTAssertTrue(reply.status.message.contains("envelope"), reply.status.message)
        }
    }

    func testHandlerErrorsKeepTheirCodeAndMessage() async throws {
        struct Broken: Error, CustomStringConvertible { var description: String { "the frobnicator is broken" } }
        let failing = RPCMethod<Gemma_V1_EncodeRequest, Gemma_V1_EncodeReply>("test.v1.Fail/Typed")
        let untyped = RPCMethod<Gemma_V1_EncodeRequest, Gemma_V1_EncodeReply>("test.v1.Fail/Untyped")
        let running = try RunningServer(url: WireFixtures.inprocURL("errors")) { server in
            server.register(failing) { _, _ in throw RPCError(.notFound, "no sequence 12") }
            server.register(untyped) { _, _ in throw Broken() }
        }
        addTeardownBlock { await running.stop() }
        let client = try RPCClient(url: running.url)
        defer { client.close() }
        let typed = await assertRPCError(.notFound) {
            try await client.call(failing, Gemma_V1_EncodeRequest(), timeout: .seconds(5))
        }
        XCTAssertEqual(typed?.message, "no sequence 12")
        let other = await assertRPCError(.unknown) {
            try await client.call(untyped, Gemma_V1_EncodeRequest(), timeout: .seconds(5))
        }
        XCTAssertEqual(other?.message, "the frobnicator is broken")
    }

    func testBusyServerAnswersResourceExhausted() async throws {
        let gate = Gate()
        let running = try RunningServer(url: WireFixtures.inprocURL("busy"),
                                        configuration: .init(maxConcurrentRequests: 2, spareContexts: 2)) { server in
            server.register(WireFixtures.lengths) { request, _ in
                await gate.wait()
                return WireFixtures.lengthsReply(request)
            }
        }
        addTeardownBlock { await running.stop() }
        let client = try RPCClient(url: running.url, configuration: .init(retry: .never))
        defer { client.close() }
        let blocked = (0 ..< 2).map { _ in
            Task { try await client.call(WireFixtures.lengths, WireFixtures.lengthsRequest(["ab"]), timeout: .seconds(20)) }
        }
        try await waitUntil("two handlers to start") { gate.arrived == 2 }
        let error = await assertRPCError(.resourceExhausted) {
            try await client.call(WireFixtures.lengths, WireFixtures.lengthsRequest(["x"]), timeout: .seconds(5))
        }
        XCTAssertTrue(error?.message.contains("busy") ?? false, error?.message ?? "")
        gate.open()
        for call in blocked {
            let reply = try await call.value
            XCTAssertEqual(reply.sequences.first?.ids, [2])
        }
        // With room again, calls go through.
        let reply = try await client.call(WireFixtures.lengths, WireFixtures.lengthsRequest(["xyz"]), timeout: .seconds(5))
        XCTAssertEqual(reply.sequences.first?.ids, [3])
    }

    func testOversizedRequestFailsFastOnTheClient() async throws {
        let running = try startLengthsServer(WireFixtures.inprocURL("oversize"))
        let client = try RPCClient(url: running.url, configuration: .init(maxMessageBytes: 4096))
        defer { client.close() }
        let error = await assertRPCError(.invalidArgument) {
            try await client.call(WireFixtures.lengths, WireFixtures.lengthsRequest([String(repeating: "x", count: 10_000)]),
                                  timeout: .seconds(5))
        }
        XCTAssertTrue(error?.message.contains("4096") ?? false, error?.message ?? "")
    }

    func testRetryAfterServerRestartWithinTheDeadline() async throws {
        let url = WireFixtures.ipcURL("restart")
        let first = try startLengthsServer(url)
        let retry = RPCClient.RetryPolicy(maxAttempts: 100, attemptTimeout: .milliseconds(150))
        let client = try RPCClient(url: url, configuration: .init(retry: retry, reconnectMinimum: .milliseconds(10),
                                                                   reconnectMaximum: .milliseconds(100)))
        defer { client.close() }
        let before = try await client.call(WireFixtures.lengths, WireFixtures.lengthsRequest(["one"]), timeout: .seconds(5))
        XCTAssertEqual(before.sequences.first?.ids, [3])

        await first.stop()
        let attempts = LockedBox<[UInt32]>([])
        let call = Task {
            try await client.call(WireFixtures.lengths, WireFixtures.lengthsRequest(["four"]), timeout: .seconds(20))
        }
        // Nothing listens for a while: the first tries time out and are retried.
        try await Task.sleep(for: .milliseconds(500))
        let second = try RunningServer(url: url) { server in
            server.register(WireFixtures.lengths) { request, context in
                attempts.value.append(context.attempt)
                return WireFixtures.lengthsReply(request)
            }
        }
        addTeardownBlock { await second.stop() }
        let reply = try await call.value
        XCTAssertEqual(reply.sequences.first?.ids, [4])
        let seen = attempts.value
        XCTAssertFalse(seen.isEmpty)
        XCTAssertGreaterThanOrEqual(seen.first ?? 0, 2, "the call that reached the new server should be a retry")
    }

    func testCallInFlightWhenItsServerDiesIsRetriedOnTheRestartedServer() async throws {
        let url = WireFixtures.ipcURL("dies")
        let started = Counter()
        let first = try RunningServer(url: url) { server in
            server.register(WireFixtures.lengths) { request, _ in
                _ = started.next()
                try await Task.sleep(for: .seconds(60))  // never answers; cancelled when the server stops
                return WireFixtures.lengthsReply(request)
            }
        }
        addTeardownBlock { await first.stop() }
        let client = try RPCClient(url: url, configuration: .init(reconnectMinimum: .milliseconds(10),
                                                                   reconnectMaximum: .milliseconds(100)))
        defer { client.close() }
        let call = Task {
            try await client.call(WireFixtures.lengths, WireFixtures.lengthsRequest(["seven!!"]), timeout: .seconds(20))
        }
        try await waitUntil("the first server to take the call") { started.current == 1 }
        await first.stop()  // the connection drops with the request unanswered

        let attempts = LockedBox<[UInt32]>([])
        let second = try RunningServer(url: url) { server in
            server.register(WireFixtures.lengths) { request, context in
                attempts.value.append(context.attempt)
                return WireFixtures.lengthsReply(request)
            }
        }
        addTeardownBlock { await second.stop() }
        let reply = try await call.value
        XCTAssertEqual(reply.sequences.first?.ids, [7])
        XCTAssertGreaterThanOrEqual(attempts.value.first ?? 0, 2, "the retry should carry a higher attempt number")
    }

    func testGracefulShutdownFinishesInFlightAndRefusesNewCalls() async throws {
        let gate = Gate()
        let running = try RunningServer(url: WireFixtures.inprocURL("drain")) { server in
            server.register(WireFixtures.lengths) { request, _ in
                await gate.wait()
                return WireFixtures.lengthsReply(request)
            }
        }
        addTeardownBlock { await running.stop() }
        let client = try RPCClient(url: running.url, configuration: .init(retry: .never))
        defer { client.close() }
        let inFlight = Task {
            try await client.call(WireFixtures.lengths, WireFixtures.lengthsRequest(["abcd"]), timeout: .seconds(20))
        }
        try await waitUntil("the handler to start") { gate.arrived == 1 }
        running.server.shutdownGracefully()
        try await waitUntil("the server to drain") { running.server.isDraining }
        let refused = await assertRPCError(.unavailable) {
            try await client.call(WireFixtures.lengths, WireFixtures.lengthsRequest(["x"]), timeout: .seconds(5))
        }
        XCTAssertTrue(refused?.message.contains("shutting down") ?? false, refused?.message ?? "")
        gate.open()
        let reply = try await inFlight.value
        XCTAssertEqual(reply.sequences.first?.ids, [4])
        _ = try await running.task.value
    }

    func testDeadlineDescriptions() {
        XCTAssertEqual(RPCDeadline.none.description, "none")
        XCTAssertNil(RPCDeadline.none.remaining)
        XCTAssertFalse(RPCDeadline.none.hasPassed)
        XCTAssertTrue(RPCDeadline(unixMicros: 1).hasPassed)
        XCTAssertTrue(RPCDeadline.after(.seconds(1)) < RPCDeadline.none)
        XCTAssertEqual(RPCDeadline.none.earliest(RPCDeadline(unixMicros: 5)), RPCDeadline(unixMicros: 5))
        XCTAssertEqual(RPCStatusCode.deadlineExceeded.description, "DEADLINE_EXCEEDED")
        XCTAssertEqual(RPCStatusCode.unauthenticated.rawValue, 16)
    }
}

/// A value behind a lock, for handlers to report what they saw.
final class LockedBox<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value

    init(_ value: Value) { stored = value }

    var value: Value {
        get {
            lock.lock()
            defer { lock.unlock() }
            return stored
        }
        set {
            lock.lock()
            stored = newValue
            lock.unlock()
        }
    }
}
