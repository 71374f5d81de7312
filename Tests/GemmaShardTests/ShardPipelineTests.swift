import Foundation
import GemmaModel
import GemmaShard
import GemmaShardService
import GemmaTokenizer
@testable import GemmaWire
import GemmaTestSupport
import XCTest

/// Two ShardServices over RPC form a pipeline that generates what the whole model generates.
final class ShardPipelineTests: XCTestCase {
    /// Stages 0-1 and 1-3 of tiny-mqa, on inproc:// (or ipc://) addresses.
    private func tinyPipeline(dtype: Gemma_V1_Tensor.DType = .f32, kvCacheBytes: Int = 64 << 20,
                              ipc: Bool = false) throws -> TestPipeline {
        let url = { (name: String) in ipc ? ShardFixtures.ipcURL(name) : ShardFixtures.inprocURL(name) }
        let first = try RunningShard(model: ShardFixtures.tinyMQA, layers: 0 ..< 1, kvCacheBytes: kvCacheBytes, url: url("a"))
        let last = try RunningShard(model: ShardFixtures.tinyMQA, layers: 1 ..< 3, kvCacheBytes: kvCacheBytes, url: url("b"))
        addTeardownBlock {
            await first.stop()
            await last.stop()
        }
        return TestPipeline(stages: [first, last], hiddenDType: dtype)
    }

    func testTwoStagesReproduceTransformersGreedyContinuations() async throws {
        let pipeline = try tinyPipeline(dtype: .f32, ipc: true)
        let reference = try ShardFixtures.reference()
        for (index, prompt) in reference.enumerated() {
            let generated = try await pipeline.generate([(UInt64(100 + index), prompt.tokens)], count: 24)
            XCTAssertEqual(generated[0], prompt.greedyContinuation, "prompt \(index) (\(prompt.tokens.count) tokens)")
        }
    }

    func testBatchedSequencesGiveTheTokensOfEachAlone() async throws {
        let pipeline = try tinyPipeline(dtype: .f32)
        let reference = try ShardFixtures.reference()
        // All four prompts (1 to 45 tokens) prefilled in one Forward and decoded together.
        let prompts = reference.enumerated().map { (UInt64(7 + 1000 * $0.offset), $0.element.tokens) }
        let batched = try await pipeline.generate(prompts, count: 24)
        XCTAssertEqual(batched, reference.map(\.greedyContinuation))
    }

    func testSeededSamplingIsTheSameAloneAndInABatch() async throws {
        let pipeline = try tinyPipeline(dtype: .bf16)
        let reference = try ShardFixtures.reference()
        let sampling = SamplingParameters(temperature: 1.0, topK: 50, topP: 0.95, seed: 1234)
        var alone: [[Int32]] = []
        for (index, prompt) in reference.enumerated() {
            alone.append(try await pipeline.generate([(UInt64(500 + index), prompt.tokens)], count: 12, sampling: sampling)[0])
        }
        let batched = try await pipeline.generate(reference.enumerated().map { (UInt64(600 + $0.offset), $0.element.tokens) },
                                                  count: 12, sampling: sampling)
        XCTAssertEqual(batched, alone)
        // Sampling really sampled: not the greedy text.
        XCTAssertNotEqual(alone.map { Array($0.prefix(12)) }, reference.map { Array($0.greedyContinuation.prefix(12)) })
    }

    func testBF16PipelineMatchesTheSingleProcessGeneratorWhereItIsNotANearTie() async throws {
        let first = try RunningShard(model: ShardFixtures.shakespeare, layers: 0 ..< 3)
        let last = try RunningShard(model: ShardFixtures.shakespeare, layers: 3 ..< 6)
        addTeardownBlock {
            await first.stop()
            await last.stop()
        }
        let pipeline = TestPipeline(stages: [first, last], hiddenDType: .unspecified)  // bf16 by default
        let whole = try GemmaTransformer(source: try ShardEngine.openCheckpoint(ShardFixtures.shakespeare))
        let tokenizer = try GemmaTokenizer(contentsOf: ShardFixtures.shakespeare + "/tokenizer.model")
        let prompts = ["DUKE ORSINO:\nIf music be the food of love, play on;\nGive me excess of it, that,",
                       "ROMEO:\nBut, soft! what light through yonder window breaks?\n",
                       "[Enter "].map { tokenizer.encode($0, addBOS: true) }
        let steps = 24
        var freeRunning = 0
        var teacherForced = 0
        for (index, prompt) in prompts.enumerated() {
            // Single process: greedy tokens and the top-1 minus top-2 logit margin of each step.
            let reference = try Generator(model: whole).generate(GenerationRequest(prompt: prompt, maxTokens: steps)).tokens
            let cache = whole.makeCache()
            var margins: [Float] = []
            var logits = try whole.forward(tokens: prompt, startPosition: 0, cache: cache)
            for (step, token) in reference.enumerated() {
                let sorted = logits.storage.sorted(by: >)
                margins.append(sorted[0] - sorted[1])
                logits = try whole.forward(tokens: [token], startPosition: prompt.count + step, cache: cache)
            }

            // Free-running through the pipeline: the same tokens until the first near-tie.
            let generated = try await pipeline.generate([(UInt64(index + 1), prompt)], count: steps)[0]
            let safe = margins.firstIndex { $0 <= 0.25 } ?? steps
            XCTAssertEqual(Array(generated.prefix(safe)), Array(reference.prefix(safe)),
                           "prompt \(index): the steps before the first near-tie (\(safe)); margins \(margins)")
            freeRunning += safe

            // Fed the single process's tokens: the same token at every step that is not a near-tie.
            let id = UInt64(100 + index)
            for step in 0 ..< steps {
                let input = step == 0 ? PipelineStep(id: id, start: 0, tokens: prompt)
                    : PipelineStep(id: id, start: prompt.count + step - 1, tokens: [reference[step - 1]])
                let token = try await pipeline.step([input])[0].token
                if margins[step] > 0.25 {
                    XCTAssertEqual(token, reference[step], "prompt \(index), step \(step), margin \(margins[step])")
                    teacherForced += 1
                }
            }
        }
        XCTAssertGreaterThan(freeRunning, 0)
        XCTAssertGreaterThan(teacherForced, 30, "too few steps outside near-ties to compare")

        // Unspecified means bf16 on the wire.
        var request = Gemma_V1_ForwardRequest()
        request.segments = [wireSegment(999, start: 0, tokens: prompts[0])]
        let reply = try await first.forward(request)
        guard case .hidden(let hidden) = reply.result else { return XCTFail("no hidden states") }
        XCTAssertEqual(hidden.dtype, .bf16)
        XCTAssertEqual(hidden.shape, [UInt64(prompts[0].count), 256])
        XCTAssertEqual(hidden.data.count, prompts[0].count * 256 * 2)
    }

    func testConcurrentForwardsQueueAndEachGetsItsOwnResult() async throws {
        let pipeline = try tinyPipeline(dtype: .bf16)
        let stage = pipeline.stages[0]
        let prompts = try ShardFixtures.reference().map(\.tokens)
        func request(_ id: UInt64, _ tokens: [Int32]) -> Gemma_V1_ForwardRequest {
            var request = Gemma_V1_ForwardRequest()
            request.segments = [wireSegment(id, start: 0, tokens: tokens)]
            return request
        }
        var serial: [Gemma_V1_ForwardReply] = []
        for (index, prompt) in prompts.enumerated() {
            serial.append(try await stage.forward(request(UInt64(index), prompt)))
        }
        let concurrent = try await withThrowingTaskGroup(of: (Int, Gemma_V1_ForwardReply).self) { group in
            for round in 0 ..< 4 {
                for (index, prompt) in prompts.enumerated() {
                    group.addTask { (index, try await stage.forward(request(UInt64(100 * (round + 1) + index), prompt))) }
                }
            }
            return try await group.reduce(into: [(Int, Gemma_V1_ForwardReply)]()) { $0.append($1) }
        }
        XCTAssertEqual(concurrent.count, 16)
        for (index, reply) in concurrent {
            XCTAssertEqual(reply, serial[index], "prompt \(index)")
        }
        let info = try await stage.info()
        XCTAssertEqual(info.activeSequences, 20)
    }

    func testRepeatedForwardIsIdempotent() async throws {
        let pipeline = try tinyPipeline(dtype: .bf16)
        let prompt = try ShardFixtures.reference()[2]
        let first = pipeline.stages[0]
        let segment = wireSegment(9, start: 0, tokens: prompt.tokens)
        var request = Gemma_V1_ForwardRequest()
        request.segments = [segment]
        let once = try await first.forward(request)
        let twice = try await first.forward(request)
        XCTAssertEqual(once, twice)

        // Through both stages: a decode step retried gives the same token and logprobs, and so
        // does a step re-sent after later ones (the cache is cut back to its start).
        let prefill = try await pipeline.step([PipelineStep(id: 11, start: 0, tokens: prompt.tokens)])
        let decode = PipelineStep(id: 11, start: prompt.tokens.count, tokens: [prefill[0].token], logprobs: true, top: 3)
        let a = try await pipeline.step([decode])
        let b = try await pipeline.step([decode])
        XCTAssertEqual(a, b)
        _ = try await pipeline.step([PipelineStep(id: 11, start: prompt.tokens.count + 1, tokens: [a[0].token])])
        let c = try await pipeline.step([decode])
        XCTAssertEqual(a, c)
        let info = try await first.info()
        XCTAssertEqual(info.activeSequences, 2)
    }

    func testGapsAndUnknownSequencesAreFailedPreconditionNamingTheSequence() async throws {
        let pipeline = try tinyPipeline()
        let stage = pipeline.stages[0]
        var request = Gemma_V1_ForwardRequest()
        request.segments = [wireSegment(77, start: 5, tokens: [3, 4])]
        var error = await assertRPCError(.failedPrecondition) { try await stage.forward(request) }
        XCTAssertTrue(error?.message.contains("unknown sequence 77") ?? false, error?.message ?? "")

        request.segments = [wireSegment(77, start: 0, tokens: [2, 3, 4])]
        _ = try await stage.forward(request)
        request.segments = [wireSegment(77, start: 4, tokens: [5])]
        error = await assertRPCError(.failedPrecondition) { try await stage.forward(request) }
        XCTAssertTrue(error?.message.contains("sequence 77 has 3 cached positions, segment starts at 4") ?? false, error?.message ?? "")

        // A refused batch changes nothing: its other (valid) segment was not run either.
        request.segments = [wireSegment(78, start: 0, tokens: [2, 9]), wireSegment(77, start: 9, tokens: [5])]
        await assertRPCError(.failedPrecondition) { try await stage.forward(request) }
        let info = try await stage.info()
        XCTAssertEqual(info.activeSequences, 1)

        // The last stage too (it has its own caches): a restart there looks the same.
        let last = pipeline.stages[1]
        var hidden = Gemma_V1_Tensor()
        hidden.dtype = .f32
        hidden.shape = [1, 64]
        hidden.data = Data(count: 64 * 4)
        request.segments = [wireSegment(77, start: 3, hidden: hidden)]
        error = await assertRPCError(.failedPrecondition) { try await last.forward(request) }
        XCTAssertTrue(error?.message.contains("unknown sequence 77") ?? false, error?.message ?? "")
    }

    func testFullKVCacheIsResourceExhaustedAndTheShardKeepsServing() async throws {
        // Stage 0-1 of tiny-mqa: 1 layer x 16 wide keys and values = 128 bytes a position;
        // room for 40 positions.
        let stage = try RunningShard(model: ShardFixtures.tinyMQA, layers: 0 ..< 1, kvCacheBytes: 40 * 128)
        addTeardownBlock { await stage.stop() }
        var request = Gemma_V1_ForwardRequest()
        request.segments = [wireSegment(1, start: 0, tokens: Array(repeating: 5, count: 16))]
        _ = try await stage.forward(request)
        request.segments = [wireSegment(2, start: 0, tokens: Array(repeating: 6, count: 16))]
        _ = try await stage.forward(request)
        var info = try await stage.info()
        XCTAssertEqual(info.kvUsedBytes, 32 * 128)
        XCTAssertEqual(info.kvCapacityBytes, 40 * 128)

        // A third sequence does not fit; nor does growing sequence 1 (to 32 positions).
        request.segments = [wireSegment(3, start: 0, tokens: Array(repeating: 7, count: 16))]
        let error = await assertRPCError(.resourceExhausted) { try await stage.forward(request) }
        XCTAssertTrue(error?.message.contains("KV cache") ?? false, error?.message ?? "")
        request.segments = [wireSegment(1, start: 16, tokens: [8])]
        await assertRPCError(.resourceExhausted) { try await stage.forward(request) }
        info = try await stage.info()
        XCTAssertEqual(info.kvUsedBytes, 32 * 128, "a refused batch took memory")
        XCTAssertEqual(info.activeSequences, 2, "a sequence was evicted or added")

        // Still serving what fits: sequence 2 recomputes its last position (no growth).
        request.segments = [wireSegment(2, start: 15, tokens: [6])]
        _ = try await stage.forward(request)

        // Release frees, and the third sequence fits.
        let released = try await stage.release([1, 999])
        XCTAssertEqual(released, 1)
        info = try await stage.info()
        XCTAssertEqual(info.kvUsedBytes, 16 * 128)
        XCTAssertEqual(info.activeSequences, 1)
        request.segments = [wireSegment(3, start: 0, tokens: Array(repeating: 7, count: 16))]
        _ = try await stage.forward(request)
        // A released sequence is unknown afterwards.
        request.segments = [wireSegment(1, start: 16, tokens: [8])]
        await assertRPCError(.failedPrecondition) { try await stage.forward(request) }
    }

    func testInfoDescribesTheStagesAndFingerprintsAgree() async throws {
        let pipeline = try tinyPipeline()
        let a = try await pipeline.stages[0].info()
        let b = try await pipeline.stages[1].info()
        XCTAssertEqual([a.firstLayer, a.endLayer, a.layerCount], [0, 1, 3])
        XCTAssertEqual([b.firstLayer, b.endLayer, b.layerCount], [1, 3, 3])
        XCTAssertEqual([a.isFirst, a.isLast, b.isFirst, b.isLast], [true, false, false, true])
        XCTAssertEqual([a.hiddenSize, a.vocabSize, b.hiddenSize, b.vocabSize], [64, 1000, 64, 1000])
        XCTAssertEqual(a.kvCapacityBytes, 64 << 20)
        XCTAssertEqual([a.kvUsedBytes, b.kvUsedBytes], [0, 0])
        XCTAssertEqual(a.modelFingerprint.count, 64)
        XCTAssertTrue(a.modelFingerprint.allSatisfy { "0123456789abcdef".contains($0) })
        XCTAssertEqual(a.modelFingerprint, b.modelFingerprint)

        let other = try RunningShard(model: ShardFixtures.tinyGQA, layers: nil)
        addTeardownBlock { await other.stop() }
        let c = try await other.info()
        XCTAssertNotEqual(c.modelFingerprint, a.modelFingerprint)
        XCTAssertEqual([c.isFirst, c.isLast], [true, true])

        // Release shows in Info.
        _ = try await pipeline.step([PipelineStep(id: 5, start: 0, tokens: [2, 17, 301])])
        let before = try await pipeline.stages[1].info()
        XCTAssertEqual(before.activeSequences, 1)
        XCTAssertGreaterThan(before.kvUsedBytes, 0)
        let released = try await pipeline.stages[1].release([5])
        XCTAssertEqual(released, 1)
        let after = try await pipeline.stages[1].info()
        XCTAssertEqual(after.kvUsedBytes, 0)
        XCTAssertEqual(after.activeSequences, 0)
    }

    func testLastStageReportsLogprobsOfTheRawDistribution() async throws {
        let pipeline = try tinyPipeline(dtype: .f32)
        let prompt: [Int32] = [2, 17, 301, 44]
        let sampling = SamplingParameters(temperature: 0.7, topK: 5, seed: 3)
        let tokens = try await pipeline.step([PipelineStep(id: 1, start: 0, tokens: prompt, sampling: sampling,
                                                           logprobs: true, top: 5)])
        let sampled = try XCTUnwrap(tokens.first)

        // The whole model's logits at the last position: log-softmax without temperature or top-k.
        let whole = try GemmaTransformer(source: try ShardEngine.openCheckpoint(ShardFixtures.tinyMQA))
        let logits = try whole.forward(tokens: prompt, startPosition: 0, cache: whole.makeCache()).storage
        let maximum = logits.max()!
        let logZ = Double(maximum) + log(logits.reduce(0.0) { $0 + exp(Double($1) - Double(maximum)) })
        let order = logits.indices.sorted { logits[$0] != logits[$1] ? logits[$0] > logits[$1] : $0 < $1 }
        XCTAssertEqual(sampled.topLogprobs.map(\.token), order.prefix(5).map(Int32.init))
        for top in sampled.topLogprobs {
            XCTAssertEqual(Double(top.logprob), Double(logits[Int(top.token)]) - logZ, accuracy: 1e-3)
        }
        XCTAssertEqual(Double(sampled.logprob), Double(logits[Int(sampled.token)]) - logZ, accuracy: 1e-3)
        XCTAssertTrue(order.prefix(5).contains(Int(sampled.token)), "top_k 5 sampled outside the top 5")
        let expected = logits.withUnsafeBufferPointer { Sampler.sample($0, parameters: sampling, position: prompt.count) }
        XCTAssertEqual(Int(sampled.token), expected)
    }

    func testMalformedBatchesAreInvalidArgument() async throws {
        let pipeline = try tinyPipeline()
        let first = pipeline.stages[0], last = pipeline.stages[1]
        func check(_ stage: RunningShard, _ segments: [Gemma_V1_Segment], _ expected: String,
                   file: StaticString = #filePath, line: UInt = #line) async {
            var request = Gemma_V1_ForwardRequest()
            request.segments = segments
            let error = await assertRPCError(.invalidArgument, file: file, line: line) { try await stage.forward(request) }
            XCTAssertTrue(error?.message.contains(expected) ?? false, "\(error?.message ?? "") lacks \(expected)", file: file, line: line)
        }
        func hidden(rows: Int, columns: Int = 64, dtype: Gemma_V1_Tensor.DType = .bf16, bytes: Int? = nil,
                    value: Float = 0.5) -> Gemma_V1_Tensor {
            var tensor = Gemma_V1_Tensor()
            tensor.dtype = dtype
            tensor.shape = [UInt64(rows), UInt64(columns)]
            let values = [Float](repeating: value, count: rows * columns)
            let encoded = HiddenStates(encoding: values, rows: rows, columns: columns, as: dtype == .f32 ? .f32 : .bf16).data
            tensor.data = bytes.map { Data(encoded.prefix($0)) } ?? encoded
            return tensor
        }
        await check(first, [], "no segments")
        await check(first, [wireSegment(1, start: 0, tokens: [2, 1000])], "token id 1000 is outside the vocabulary")
        await check(first, [wireSegment(1, start: 0, tokens: [-1])], "token id -1")
        await check(first, [wireSegment(1, start: 0, tokens: [2]), wireSegment(1, start: 0, tokens: [3])], "more than once")
        await check(first, [wireSegment(1, start: 250, tokens: Array(repeating: 3, count: 10))], "context length 256")
        await check(first, [wireSegment(1, start: 0)], "neither tokens nor hidden")
        await check(first, [wireSegment(1, start: 0, hidden: hidden(rows: 1))], "takes token ids")
        await check(last, [wireSegment(1, start: 0, tokens: [2])], "takes hidden states")
        await check(last, [wireSegment(1, start: 0, hidden: hidden(rows: 2, columns: 32))], "hidden size is 64")
        await check(last, [wireSegment(1, start: 0, hidden: hidden(rows: 2, bytes: 100))], "need 256 bytes")
        await check(last, [wireSegment(1, start: 0, hidden: hidden(rows: 0))], "is empty")
        await check(last, [wireSegment(1, start: 0, hidden: hidden(rows: 1, dtype: .f32, value: .nan))], "not a finite number")
        var unspecified = hidden(rows: 1)
        unspecified.dtype = .unspecified
        await check(last, [wireSegment(1, start: 0, hidden: unspecified)], "element type")
        var threeD = hidden(rows: 1)
        threeD.shape = [1, 1, 64]
        await check(last, [wireSegment(1, start: 0, hidden: threeD)], "[tokens, hidden_size]")
        var huge = hidden(rows: 1)
        huge.shape = [UInt64.max, 64]
        await check(last, [wireSegment(1, start: 0, hidden: huge)], "too large")
        await check(last, [wireSegment(1, start: 0, hidden: hidden(rows: 1), sampling: SamplingParameters(temperature: -1))],
                    "temperature")
        await check(last, [wireSegment(1, start: 0, hidden: hidden(rows: 1), top: 21)], "top_logprobs is 21")
        // Nothing was cached by any of them.
        let infos = [try await first.info(), try await last.info()]
        XCTAssertEqual(infos.map(\.activeSequences), [0, 0])
    }
}
