import GemmaModel
import XCTest

/// The forward pass against transformers' float32 logits (Tests/Fixtures/models, made by
/// scripts/make_fixtures.py).
final class ReferenceLogitsTests: XCTestCase {
    static let tolerance: Float = 1e-3

    func testPrefillLogitsMatchTransformersAtEveryPosition() throws {
        for name in Fixtures.modelNames {
            let model = try GemmaTransformer(source: SafetensorsCheckpoint(directory: Fixtures.model(name)))
            for prompt in try Fixtures.reference(name) {
                let logits = try model.forward(tokens: prompt.tokens, startPosition: 0,
                                               cache: model.makeCache(), allPositions: true)
                for p in 0..<prompt.tokens.count {
                    let difference = maxAbsDifference(logits.row(p), prompt.logits[p])
                    XCTAssertLessThan(difference, Self.tolerance, "\(name), prompt of \(prompt.tokens.count) tokens, position \(p)")
                }
            }
        }
    }

    func testIncrementalDecodingMatchesPrefill() throws {
        for name in Fixtures.modelNames {
            let model = try GemmaTransformer(source: SafetensorsCheckpoint(directory: Fixtures.model(name)))
            let prompt = try Fixtures.reference(name).max { $0.tokens.count < $1.tokens.count }!
            let cache = model.makeCache()
            // A first chunk prefilled, then one token at a time.
            let split = 5
            let first = try model.forward(tokens: Array(prompt.tokens[..<split]), startPosition: 0, cache: cache, allPositions: true)
            for p in 0..<split {
                XCTAssertLessThan(maxAbsDifference(first.row(p), prompt.logits[p]), Self.tolerance, "\(name) position \(p)")
            }
            for p in split..<prompt.tokens.count {
                let logits = try model.forward(tokens: [prompt.tokens[p]], startPosition: p, cache: cache)
                XCTAssertLessThan(maxAbsDifference(logits.row(0), prompt.logits[p]), Self.tolerance, "\(name) position \(p)")
            }
        }
    }

    func testGreedyContinuationsMatchTransformers() throws {
        for name in Fixtures.modelNames {
            let model = try GemmaTransformer(source: SafetensorsCheckpoint(directory: Fixtures.model(name)))
            let generator = Generator(model: model)
            for prompt in try Fixtures.reference(name) {
                let result = try generator.generate(GenerationRequest(prompt: prompt.tokens, maxTokens: 24))
                XCTAssertEqual(result.tokens, prompt.greedyContinuation, "\(name), prompt of \(prompt.tokens.count) tokens")
                XCTAssertEqual(result.finish, .length)
            }
        }
    }

    func testSequencesBatchedTogetherGiveTheirOwnLogits() throws {
        let name = "tiny-gqa"
        let model = try GemmaTransformer(source: SafetensorsCheckpoint(directory: Fixtures.model(name)))
        let prompts = try Fixtures.reference(name)
        let caches = prompts.map { _ in model.makeCache() }
        // Step 1: every prompt but its last token, all in one batch.
        var tokens: [Int32] = []
        var segments: [BatchSegment] = []
        for (prompt, cache) in zip(prompts, caches) where prompt.tokens.count > 1 {
            tokens += prompt.tokens.dropLast()
            segments.append(BatchSegment(cache: cache, startPosition: 0, count: prompt.tokens.count - 1))
        }
        var hidden = try model.embed(tokens)
        try model.forwardLayers(&hidden, segments: segments)
        // Step 2: each prompt's last token (the one-token prompt starts here), one batch.
        hidden = try model.embed(prompts.map { $0.tokens.last! })
        try model.forwardLayers(&hidden, segments: zip(prompts, caches).map {
            BatchSegment(cache: $1, startPosition: $0.tokens.count - 1, count: 1)
        })
        let logits = try model.logits(hidden, rows: Array(0..<prompts.count))
        for (i, prompt) in prompts.enumerated() {
            XCTAssertLessThan(maxAbsDifference(logits.row(i), prompt.logits.last!), Self.tolerance, "prompt \(i)")
        }
    }

    func testRepeatedForwardStepIsIdempotent() throws {
        let model = try GemmaTransformer(source: SafetensorsCheckpoint(directory: Fixtures.model("tiny-mqa")))
        let prompt = try Fixtures.reference("tiny-mqa")[2]
        let cache = model.makeCache()
        _ = try model.forward(tokens: Array(prompt.tokens.dropLast()), startPosition: 0, cache: cache)
        let last = prompt.tokens.count - 1
        let once = try model.forward(tokens: [prompt.tokens[last]], startPosition: last, cache: cache)
        let again = try model.forward(tokens: [prompt.tokens[last]], startPosition: last, cache: cache)
        XCTAssertEqual(once, again)
        XCTAssertEqual(cache.length, prompt.tokens.count)
    }

    func testLayerRangesChainedGiveTheWholeModel() throws {
        let source = try SafetensorsCheckpoint(directory: Fixtures.model("tiny-mqa"))
        let first = try GemmaTransformer(source: source, layers: 0..<1)
        let last = try GemmaTransformer(source: source, layers: 1..<3)
        XCTAssertTrue(first.isFirstStage && !first.isLastStage)
        XCTAssertTrue(last.isLastStage && !last.isFirstStage)
        let prompt = try Fixtures.reference("tiny-mqa")[2]
        var hidden = try first.embed(prompt.tokens)
        try first.forwardLayers(&hidden, segments: [BatchSegment(cache: first.makeCache(), startPosition: 0, count: prompt.tokens.count)])
        try last.forwardLayers(&hidden, segments: [BatchSegment(cache: last.makeCache(), startPosition: 0, count: prompt.tokens.count)])
        let logits = try last.logits(hidden, rows: [prompt.tokens.count - 1])
        XCTAssertLessThan(maxAbsDifference(logits.row(0), prompt.logits.last!), Self.tolerance)
        XCTAssertThrowsError(try last.embed([2]))
        XCTAssertThrowsError(try first.logits(hidden, rows: [0]))
    }

    func testBadForwardInputsAreErrors() throws {
        let model = try GemmaTransformer(source: SafetensorsCheckpoint(directory: Fixtures.model("tiny-mha")))
        XCTAssertThrowsError(try model.forward(tokens: [2, 1000], startPosition: 0, cache: model.makeCache())) {
            XCTAssertEqual($0 as? ForwardError, .tokenOutOfRange(token: 1000, vocabularySize: 1000))
        }
        XCTAssertThrowsError(try model.forward(tokens: [2], startPosition: 3, cache: model.makeCache())) {
            XCTAssertEqual($0 as? ForwardError, .positionGap(startPosition: 3, cachedPositions: 0))
        }
        let long = [Int32](repeating: 7, count: 257)
        XCTAssertThrowsError(try model.forward(tokens: long, startPosition: 0, cache: model.makeCache())) {
            XCTAssertEqual($0 as? ForwardError, .contextExceeded(positions: 257, contextLength: 256))
        }
    }
}
