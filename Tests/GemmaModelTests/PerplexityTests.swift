import Foundation
import GemmaModel
import GemmaTokenizer
import XCTest

/// `gemma perplexity`'s definition (llama.cpp's) against transformers' figure on the same
/// chunks of held-out text (Models/tiny-shakespeare/perplexity-reference.json, made by
/// scripts/shakespeare/reference_perplexity.py).
final class PerplexityTests: XCTestCase {
    func testBundledModelPerplexityMatchesTransformers() throws {
        let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Models/tiny-shakespeare")
        let reference = try JSONSerialization.jsonObject(
            with: Data(contentsOf: model.appendingPathComponent("perplexity-reference.json"))) as! [String: Any]
        let text = try String(contentsOf: model.appendingPathComponent(reference["text_file"] as! String), encoding: .utf8)
        let tokenizer = try GemmaTokenizer(contentsOf: model.appendingPathComponent("tokenizer.model").path)
        let transformer = try GemmaTransformer(source: SafetensorsCheckpoint(directory: model.path))
        let evaluator = try PerplexityEvaluator(model: transformer, contextLength: reference["ctx"] as! Int, bos: tokenizer.bos)
        let result = try evaluator.evaluate(tokenizer.encode(text, addBOS: true))
        XCTAssertEqual(result.chunks, reference["chunks"] as? Int)
        XCTAssertEqual(result.scoredTokens, reference["scored_tokens"] as? Int)
        let expected = reference["perplexity"] as! Double
        XCTAssertEqual(result.perplexity, expected, accuracy: expected * 0.005)
        XCTAssertEqual(result.standardError, reference["perplexity_stderr"] as! Double, accuracy: (reference["perplexity_stderr"] as! Double) * 0.05)
        for (ours, theirs) in zip(result.chunkMeanNLL, reference["chunk_mean_nll"] as! [Double]) {
            XCTAssertEqual(ours, theirs, accuracy: 2e-3)
        }
    }
}
