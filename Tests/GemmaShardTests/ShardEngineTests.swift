import Foundation
import GemmaModel
import GemmaQuant
@testable import GemmaShard
import GemmaTestSupport
import XCTest

/// The engine without the wire: conversions, the KV cache pool, errors, fingerprints.
final class ShardEngineTests: XCTestCase {
    func testBF16EncodingRoundsToNearestEven() {
        // Halfway cases go to the even neighbour; others to the nearest.
        let cases: [(Float, UInt16)] = [
            (1.0, 0x3F80),
            (Float(bitPattern: 0x3F80_8000), 0x3F80),  // 1 + 2^-8: halfway, 0x3F80 is even
            (Float(bitPattern: 0x3F81_8000), 0x3F82),  // halfway, up to the even 0x3F82
            (Float(bitPattern: 0x3F80_8001), 0x3F81),  // just above halfway
            (Float(bitPattern: 0x3F80_7FFF), 0x3F80),  // just below
            (-2.5, 0xC020),
            (Float(bitPattern: 0x7F7F_FFFF), 0x7F80),  // the largest float rounds to infinity
            (.infinity, 0x7F80),
        ]
        let states = HiddenStates(encoding: cases.map(\.0), rows: 1, columns: cases.count, as: .bf16)
        let bits = (0 ..< cases.count).map { i in
            UInt16(states.data[2 * i]) | UInt16(states.data[2 * i + 1]) << 8
        }
        XCTAssertEqual(bits, cases.map(\.1))
        let nan = HiddenStates(encoding: [.nan], rows: 1, columns: 1, as: .bf16).floats()
        XCTAssertTrue(nan[0].isNaN)
        // Widening is exact, and f32 is a lossless round trip.
        XCTAssertEqual(states.floats().prefix(6).map { $0 }, [1.0, 1.0, Float(bitPattern: 0x3F82_0000), Float(bitPattern: 0x3F81_0000), 1.0, -2.5])
        let values: [Float] = [0.1, -3.25e-20, 7e30, -0.0]
        XCTAssertEqual(HiddenStates(encoding: values, rows: 2, columns: 2, as: .f32).floats(), values)
        XCTAssertEqual(HiddenStates(encoding: [1.5, 65504, 1e-8], rows: 1, columns: 3, as: .f16).floats(), [1.5, 65504, 0])
    }

    func testLogSoftmaxTopListIsOrderedWithTiesByLowerId() {
        let logits: [Float] = [1, 3, 2, 3, -1, 2.5]
        logits.withUnsafeBufferPointer { buffer in
            let softmax = LogSoftmax(buffer)
            XCTAssertEqual(softmax.top(4), [1, 3, 5, 2])
            XCTAssertEqual(softmax.top(10), [1, 3, 5, 2, 0, 4])
            let total = (0 ..< logits.count).reduce(0.0) { $0 + exp(Double(softmax.logprob($1))) }
            XCTAssertEqual(total, 1, accuracy: 1e-6)
            XCTAssertEqual(softmax.logprob(1), softmax.logprob(3))
        }
    }

    func testPoolRefusesWhatPassesTheBudgetAndChangesNothing() throws {
        let pool = KVCachePool(capacityBytes: 1000 * 8, layerCount: 1, kvWidth: 1)  // 8 bytes a position
        _ = try pool.prepare([(1, 0, 500, 0)])
        XCTAssertEqual(pool.usedBytes, 500 * 8)
        // Growing 1 doubles it (to 1000 positions): exactly the budget.
        let grown = try pool.prepare([(1, 0, 501, 0)])
        XCTAssertEqual(grown.caches[0].capacity, 1000)
        XCTAssertEqual(grown.created, [])
        XCTAssertEqual(pool.usedBytes, 1000 * 8)
        let error = assertShardError { try pool.prepare([(2, 0, 1, 0)]) }
        XCTAssertEqual(error, .kvCacheExhausted(neededBytes: 16 * 8, usedBytes: 1000 * 8, capacityBytes: 1000 * 8))
        XCTAssertEqual(pool.count, 1)
        XCTAssertEqual(pool.release([2, 1, 1]), 1)
        XCTAssertEqual(pool.usedBytes, 0)
        XCTAssertEqual(pool.count, 0)
    }

    func testReservedSequencesTakeTheirWholeLengthOnceAndNeverGrow() throws {
        let pool = KVCachePool(capacityBytes: 1000 * 8, layerCount: 1, kvWidth: 1)
        let first = try pool.prepare([(1, 0, 10, 300), (2, 0, 3, 600)])
        XCTAssertEqual(first.caches.map(\.capacity), [300, 600])
        XCTAssertEqual(pool.usedBytes, 900 * 8)
        // Growing inside the reservation takes nothing more.
        let step = try pool.prepare([(1, 0, 11, 300), (2, 0, 4, 600)])
        XCTAssertEqual(step.caches.map(\.capacity), [300, 600])
        XCTAssertEqual(pool.usedBytes, 900 * 8)
        // A third sequence that reserves more than is left is refused, changing nothing.
        let error = assertShardError { try pool.prepare([(3, 0, 1, 101)]) }
        XCTAssertEqual(error, .kvCacheExhausted(neededBytes: 101 * 8, usedBytes: 900 * 8, capacityBytes: 1000 * 8))
        XCTAssertEqual(pool.count, 2)
    }

    func testEngineErrorsNameTheSequenceAndChangeNothing() throws {
        let engine = try ShardEngine(modelPath: ShardFixtures.tinyMQA, layers: 0 ..< 2)
        XCTAssertTrue(engine.isFirstStage)
        XCTAssertFalse(engine.isLastStage)
        let output = try engine.forward([ShardSegment(sequenceID: 4, startPosition: 0, input: .tokens([2, 5, 6]))],
                                        hiddenDType: .f32)
        guard case .hidden(let hidden) = output else { return XCTFail("no hidden states") }
        XCTAssertEqual([hidden.rows, hidden.columns, hidden.data.count], [3, 64, 3 * 64 * 4])
        let used = engine.status.kvUsedBytes

        var error = assertShardError { try engine.forward([ShardSegment(sequenceID: 5, startPosition: 2, input: .tokens([7]))]) }
        XCTAssertEqual(error, .unknownSequence(id: 5, startPosition: 2))
        XCTAssertEqual(error?.statusName, "FAILED_PRECONDITION")
        XCTAssertTrue(error?.description.hasPrefix("unknown sequence 5") ?? false)
        error = assertShardError { try engine.forward([ShardSegment(sequenceID: 4, startPosition: 4, input: .tokens([7]))]) }
        XCTAssertEqual(error?.description.hasPrefix("sequence 4 has 3 cached positions, segment starts at 4"), true)
        // The new sequence 6 of a refused batch is not kept.
        error = assertShardError {
            try engine.forward([ShardSegment(sequenceID: 6, startPosition: 0, input: .tokens([2])),
                                ShardSegment(sequenceID: 4, startPosition: 9, input: .tokens([7]))])
        }
        XCTAssertEqual(error?.statusName, "FAILED_PRECONDITION")
        XCTAssertEqual(engine.status.activeSequences, 1)
        XCTAssertEqual(engine.status.kvUsedBytes, used)
        XCTAssertEqual(engine.pool.cachedPositions(4), 3)
        let context = engine.config.contextLength
        error = assertShardError {
            try engine.forward([ShardSegment(sequenceID: 7, startPosition: 0, input: .tokens([2]), reservePositions: context + 1)])
        }
        XCTAssertEqual(error?.statusName, "INVALID_ARGUMENT")
        XCTAssertEqual(error?.description.contains("reserves \(context + 1) positions"), true)
        XCTAssertEqual(engine.status.kvBytesPerPosition, 2 * 2 * engine.config.kvWidth * 4)
    }

    func testStagesChainedInProcessGiveTheWholeModelsLogitsSampling() throws {
        // Three stages of one layer each, bf16 between them, against the whole model's greedy tokens.
        let stages = try (0 ..< 3).map { try ShardEngine(modelPath: ShardFixtures.tinyMQA, layers: $0 ..< $0 + 1) }
        let prompt = try ShardFixtures.reference()[3]
        var tokens = prompt.tokens
        var start = 0
        var generated: [Int32] = []
        for _ in 0 ..< 24 {
            var input = ShardSegment.Input.tokens(Array(tokens[start...]))
            var token: Int32 = -1
            for stage in stages {
                switch try stage.forward([ShardSegment(sequenceID: 1, startPosition: start, input: input)], hiddenDType: .f32) {
                case .hidden(let hidden): input = .hidden(hidden)
                case .sampled(let sampled): token = sampled[0].token
                }
            }
            generated.append(token)
            start = tokens.count
            tokens.append(token)
        }
        XCTAssertEqual(generated, prompt.greedyContinuation)
    }

    func testFingerprintIsTheSameForEveryLayerRangeAndFollowsTheBytes() throws {
        let whole = try ShardEngine(modelPath: ShardFixtures.tinyGQA)
        let part = try ShardEngine(modelPath: ShardFixtures.tinyGQA, layers: 1 ..< 2)
        XCTAssertEqual(whole.fingerprint, part.fingerprint)
        XCTAssertEqual(whole.fingerprint, try ModelFingerprint.of(try ShardEngine.openCheckpoint(ShardFixtures.tinyGQA)))

        // A copy with one byte changed near the end of the file (the last 4 KiB of its last tensor).
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("gemma-shard-fp-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: ShardFixtures.tinyGQA), to: copy)
        defer { try? FileManager.default.removeItem(at: copy) }
        XCTAssertEqual(try ModelFingerprint.of(try ShardEngine.openCheckpoint(copy.path)), whole.fingerprint)
        let weights = copy.appendingPathComponent("model.safetensors")
        var bytes = try Data(contentsOf: weights)
        bytes[bytes.count - 3] ^= 0x40
        try bytes.write(to: weights)
        XCTAssertNotEqual(try ModelFingerprint.of(try ShardEngine.openCheckpoint(copy.path)), whole.fingerprint)
    }

    func testGGUFStagesShareAFingerprintAndGenerateTheReference() throws {
        let f32 = ShardFixtures.packageRoot.appendingPathComponent("Tests/Fixtures/llamacpp/tiny-mqa-f32.gguf").path
        let q8 = ShardFixtures.packageRoot.appendingPathComponent("Tests/Fixtures/llamacpp/tiny-mqa-q8_0.gguf").path
        let stages = [try ShardEngine(modelPath: f32, layers: 0 ..< 2), try ShardEngine(modelPath: f32, layers: 2 ..< 3)]
        XCTAssertEqual(stages[0].fingerprint, stages[1].fingerprint)
        let others = try [q8, ShardFixtures.tinyMQA].map { try ModelFingerprint.of(try ShardEngine.openCheckpoint($0)) }
        XCTAssertEqual(Set(others + [stages[0].fingerprint]).count, 3, "different files, different fingerprints")

        let prompt = try ShardFixtures.reference()[1]
        var input = ShardSegment.Input.tokens(prompt.tokens)
        var start = 0
        var generated: [Int32] = []
        while generated.count < 24 {
            let count = input.count
            guard case .hidden(let hidden) = try stages[0].forward([ShardSegment(sequenceID: 3, startPosition: start, input: input)])
            else { return XCTFail("no hidden states") }
            guard case .sampled(let sampled) = try stages[1].forward([ShardSegment(sequenceID: 3, startPosition: start, input: .hidden(hidden))])
            else { return XCTFail("no token") }
            generated.append(sampled[0].token)
            start += count
            input = .tokens([sampled[0].token])
        }
        XCTAssertEqual(generated, prompt.greedyContinuation)
    }

    func testLayerRangesOutsideTheModelAreRefused() {
        XCTAssertThrowsError(try ShardEngine(modelPath: ShardFixtures.tinyMQA, layers: 2 ..< 4)) { error in
            XCTAssertTrue("\(error)".contains("0-3"), "\(error)")
        }
        XCTAssertThrowsError(try ShardEngine(modelPath: "/nonexistent/model"))
    }
}
