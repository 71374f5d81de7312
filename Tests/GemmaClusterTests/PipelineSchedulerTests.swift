import Foundation
@testable import GemmaCluster
import GemmaShard
import GemmaShardService
import GemmaTokenizerService
import GemmaWire
import Logging
import GemmaServiceTestSupport
import GemmaTestSupport
import XCTest

/// The scheduler driving real shard and tokenizer services over nng (inproc://): the text of
/// transformers' greedy reference, batching, failover to a replica, the recovery bound, and
/// cancellation.
final class PipelineSchedulerTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let model = root.appendingPathComponent("Tests/Fixtures/models/tiny-mqa").path

    static func quiet(_ label: String) -> Logger { InProcessService.quiet(label) }

    var services: [InProcessService] = []

    override func tearDown() async throws {
        for service in services { await service.stop() }
        services = []
    }

    func start(_ running: InProcessService) -> InProcessService {
        services.append(running)
        return running
    }

    /// A scheduler over stages made of `replicas[i]` services each.
    func scheduler(stages: [(String, [InProcessService])], tokenizer: InProcessService, recoverySeconds: Double = 20,
                   kvPositionCapacity: Int? = nil, maxWaitingRequests: Int = 64) throws -> PipelineScheduler {
        var config = ClusterConfig(modelName: "tiny", tokenizer: [tokenizer.url],
                                   stages: stages.map { .init(layers: $0.0, replicas: $0.1.map(\.url)) }, http: "127.0.0.1:0")
        config.scheduling.hiddenDType = "f32"
        config.scheduling.recoverySeconds = recoverySeconds
        config.scheduling.stageTimeoutSeconds = 2
        config.scheduling.maxWaitingRequests = maxWaitingRequests
        let quickRetry = RPCClient.Configuration(retry: .never, waitsForConnection: false)
        let clients = try stages.map { try $0.1.map { try RPCClient(url: $0.url, configuration: quickRetry) } }
        let scheduler = PipelineScheduler(config: config, stages: clients, tokenizer: try RPCClient(url: tokenizer.url),
                                          contextLength: 256, kvPositionCapacity: kvPositionCapacity, logger: Self.quiet("router"))
        return scheduler
    }

    struct Completion {
        var tokens: [Int32] = []
        var text = ""
        var finish: ClusterFinishReason?
    }

    func collect(_ stream: AsyncThrowingStream<GenerationEvent, Error>, onToken: (Int) async -> Void = { _ in }) async throws -> Completion {
        var completion = Completion()
        for try await event in stream {
            switch event {
            case let .delta(text, tokens):
                completion.text += text
                completion.tokens += tokens.map(\.token)
                await onToken(completion.tokens.count)
            case let .finished(reason, _, _):
                completion.finish = reason
            }
        }
        return completion
    }

    func reference() throws -> [(prompt: [Int32], continuation: [Int32])] {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.model + "/reference.json"))) as! [String: Any]
        return (json["prompts"] as! [[String: Any]]).map {
            (($0["tokens"] as! [Int]).map(Int32.init), ($0["greedy_continuation"] as! [Int]).map(Int32.init))
        }
    }

    func testConcurrentCompletionsGiveTransformersGreedyText() async throws {
        let tokenizer = start(try InProcessService(model: Self.model, tokenizer: true))
        let scheduler = try scheduler(stages: [("0-1", [start(try InProcessService(model: Self.model, layers: 0..<1))]),
                                               ("1-3", [start(try InProcessService(model: Self.model, layers: 1..<3))])], tokenizer: tokenizer)
        await scheduler.start()
        let prompts = try reference()
        let completions = try await withThrowingTaskGroup(of: (Int, Completion).self) { group in
            for (i, prompt) in prompts.enumerated() {
                let stream = try await scheduler.submit(ClusterGenerationRequest(prompt: prompt.prompt, maxTokens: 24))
                group.addTask { (i, try await self.collect(stream)) }
            }
            var results: [Int: Completion] = [:]
            for try await (i, completion) in group { results[i] = completion }
            return results
        }
        for (i, prompt) in prompts.enumerated() {
            XCTAssertEqual(completions[i]?.tokens, prompt.continuation, "prompt \(i)")
            XCTAssertEqual(completions[i]?.finish, .length)
        }
        await scheduler.stop()
    }

    func testAdmissionWaitsForKVCapacityAndRefusesPastTheQueue() async throws {
        let tokenizer = start(try InProcessService(model: Self.model, tokenizer: true))
        let stage0 = start(try InProcessService(model: Self.model, layers: 0..<1)), stage1 = start(try InProcessService(model: Self.model, layers: 1..<3))
        let prompt = try reference()[0]
        let reservation = prompt.prompt.count + 24
        // Room for one sequence's reservation and a half; one may wait.
        let scheduler = try scheduler(stages: [("0-1", [stage0]), ("1-3", [stage1])], tokenizer: tokenizer,
                                      kvPositionCapacity: reservation * 3 / 2, maxWaitingRequests: 1)
        await scheduler.start()
        let request = ClusterGenerationRequest(prompt: prompt.prompt, maxTokens: 24)
        let first = try await scheduler.submit(request)
        let second = try await scheduler.submit(request)
        var counts = await scheduler.counts
        XCTAssertEqual([counts.running, counts.waiting], [1, 1])
        let reserved = await scheduler.kvReservation.reserved
        XCTAssertEqual(reserved, reservation)
        do {
            _ = try await scheduler.submit(request)
            XCTFail("a third request should be refused while one waits")
        } catch let error as ClusterError {
            XCTAssertEqual(error, .overloaded(retryAfterSeconds: 1))
        }
        // Too long for the KV capacity at all: refused with the reason.
        do {
            _ = try await scheduler.submit(ClusterGenerationRequest(prompt: prompt.prompt, maxTokens: reservation * 2))
            XCTFail("a request larger than the KV capacity should be refused")
        } catch let ClusterError.invalidRequest(message) {
            XCTAssertTrue(message.contains("positions of KV cache"), message)
        }
        let a = try await collect(first)
        // The first sequence's whole length was reserved at once on each stage.
        let bytesPerPosition = Int(stage1.shard!.info().kvBytesPerPosition)
        XCTAssertLessThanOrEqual(Int(stage1.shard!.info().kvUsedBytes), reservation * bytesPerPosition)
        let b = try await collect(second)
        XCTAssertEqual(a.tokens, prompt.continuation)
        XCTAssertEqual(b.tokens, prompt.continuation)
        counts = await scheduler.counts
        XCTAssertEqual([counts.running, counts.waiting], [0, 0])
        let left = await scheduler.kvReservation.reserved
        XCTAssertEqual(left, 0)
        await scheduler.stop()
    }

    func testFailoverToAReplicaGivesTheSameText() async throws {
        let tokenizer = start(try InProcessService(model: Self.model, tokenizer: true))
        let first = start(try InProcessService(model: Self.model, layers: 0..<1))
        let replicaA = start(try InProcessService(model: Self.model, layers: 1..<3)), replicaB = start(try InProcessService(model: Self.model, layers: 1..<3))
        let scheduler = try scheduler(stages: [("0-1", [first]), ("1-3", [replicaA, replicaB])], tokenizer: tokenizer)
        await scheduler.start()
        let prompt = try reference()[2]
        let stream = try await scheduler.submit(ClusterGenerationRequest(prompt: prompt.prompt, maxTokens: 24))
        var stopped = false
        let completion = try await collect(stream) { count in
            if count == 6 && !stopped {
                stopped = true
                await replicaA.stop()   // lane 0 runs on replica A of stage 1
            }
        }
        XCTAssertTrue(stopped)
        XCTAssertEqual(completion.tokens, prompt.continuation)
        await scheduler.stop()
    }

    func testPastTheRecoveryBoundTheClientGetsAnError() async throws {
        let tokenizer = start(try InProcessService(model: Self.model, tokenizer: true))
        let last = start(try InProcessService(model: Self.model, layers: 1..<3))
        let scheduler = try scheduler(stages: [("0-1", [start(try InProcessService(model: Self.model, layers: 0..<1))]), ("1-3", [last])],
                                      tokenizer: tokenizer, recoverySeconds: 1)
        await scheduler.start()
        let stream = try await scheduler.submit(ClusterGenerationRequest(prompt: try reference()[1].prompt, maxTokens: 200))
        var stopped = false
        do {
            _ = try await collect(stream) { count in
                if count == 3 && !stopped {
                    stopped = true
                    await last.stop()
                }
            }
            XCTFail("the completion should fail")
        } catch let error as ClusterError {
            guard case let .pipelineDown(message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("layers 1-3"), message)
        }
        await scheduler.stop()
    }

    func testCancelledCompletionIsReleasedOnEveryStage() async throws {
        let tokenizer = start(try InProcessService(model: Self.model, tokenizer: true))
        let stage0 = start(try InProcessService(model: Self.model, layers: 0..<1)), stage1 = start(try InProcessService(model: Self.model, layers: 1..<3))
        let scheduler = try scheduler(stages: [("0-1", [stage0]), ("1-3", [stage1])], tokenizer: tokenizer)
        await scheduler.start()
        // The client reads a first delta, then its task is cancelled (it went away).
        let firstDelta = AsyncStream<Void>.makeStream()
        let task = Task {
            let stream = try await scheduler.submit(ClusterGenerationRequest(prompt: try self.reference()[3].prompt, maxTokens: 200))
            for try await event in stream {
                if case .delta = event { firstDelta.continuation.yield() }
            }
        }
        for await _ in firstDelta.stream { break }
        task.cancel()
        _ = await task.result
        let deadline = ContinuousClock.now + .seconds(1)
        while ContinuousClock.now < deadline,
              stage0.shard!.info().activeSequences + stage1.shard!.info().activeSequences > 0 {
            try await Task.sleep(for: .milliseconds(20))
        }
        XCTAssertEqual(stage0.shard!.info().activeSequences, 0)
        XCTAssertEqual(stage1.shard!.info().activeSequences, 0)
        let counts = await scheduler.counts
        XCTAssertEqual(counts.running + counts.waiting, 0)
        await scheduler.stop()
    }

    /// max_tokens of Int.max (a client's value) is no overflow trap: the reservation saturates
    /// at the context, and generation ends there. A negative top_logprobs is refused.
    func testHugeMaxTokensSaturatesAndBadTopLogprobsIsRefused() async throws {
        let tokenizer = start(try InProcessService(model: Self.model, tokenizer: true))
        let scheduler = try scheduler(stages: [("0-3", [start(try InProcessService(model: Self.model, layers: 0..<3))])],
                                      tokenizer: tokenizer, kvPositionCapacity: 1 << 20)
        await scheduler.start()
        let prompt = try reference()[0].prompt
        let completion = try await collect(try await scheduler.submit(ClusterGenerationRequest(prompt: prompt, maxTokens: .max)))
        XCTAssertEqual(completion.tokens.count, 256 - prompt.count)
        XCTAssertEqual(completion.finish, .length)
        do {
            _ = try await scheduler.submit(ClusterGenerationRequest(prompt: prompt, maxTokens: 4, logprobs: true, topLogprobs: -1))
            XCTFail("a negative top_logprobs was accepted")
        } catch let error as ClusterError {
            guard case .invalidRequest = error else { return XCTFail("\(error)") }
        }
        await scheduler.stop()
    }
}
