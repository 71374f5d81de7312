import Foundation
import GemmaConvert
import GemmaModel
import GemmaQuant
import XCTest

/// Quantized compute on a model whose weights are scaled like a trained model's: the bundled
/// tiny Shakespeare Gemma (random test models with large weights are chaotic and amplify any
/// rounding, so they say little here).
final class QuantizedQualityTests: XCTestCase {
    static let bundled = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Models/tiny-shakespeare").path
    static var directory: URL!
    static var files: [QuantizationTarget: String] = [:]

    override class func setUp() {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("gemma-quality-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override class func tearDown() {
        try? FileManager.default.removeItem(at: directory)
    }

    func file(_ target: QuantizationTarget) throws -> String {
        if let path = Self.files[target] { return path }
        let path = Self.directory.appendingPathComponent("bundled-\(target.rawValue).gguf").path
        try GGUFConverter(input: Self.bundled).convert(to: path, target: target)
        Self.files[target] = path
        return path
    }

    let prompt = "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\nJULIET:\n"

    func testQuantizedKernelsMatchAFloatForwardOverTheSameDequantizedWeights() throws {
        for target in [QuantizationTarget.q8_0, .q4_0] {
            let loaded = try LoadedModel(path: try file(target))
            let native = try loaded.transformer()
            let dequantized = try GemmaTransformer(source: loaded.source, weightLoader: .float32)
            let tokens = loaded.tokenizer.encode(prompt, addBOS: true)
            let a = try native.forward(tokens: tokens, startPosition: 0, cache: native.makeCache(), allPositions: true)
            let b = try dequantized.forward(tokens: tokens, startPosition: 0, cache: dequantized.makeCache(), allPositions: true)
            for p in 0..<tokens.count {
                let cosine = Self.cosine(a.row(p), b.row(p))
                XCTAssertGreaterThanOrEqual(cosine, 0.999, "\(target) position \(p)")
            }
        }
    }

    func testQualityReportThresholds() throws {
        let original = try LoadedModel(path: Self.bundled)
        let q8 = try QualityReport.compare(reference: original, candidate: LoadedModel(path: try file(.q8_0)),
                                           prompts: QualityReport.defaultPrompts, maxTokens: 64)
        XCTAssertGreaterThanOrEqual(q8.meanCosine, 0.999, q8.summary)
        XCTAssertGreaterThanOrEqual(q8.top1Agreement, 0.9, q8.summary)
        let q4 = try QualityReport.compare(reference: original, candidate: LoadedModel(path: try file(.q4_0)),
                                           prompts: QualityReport.defaultPrompts, maxTokens: 64)
        XCTAssertGreaterThanOrEqual(q4.meanCosine, 0.95, q4.summary)
        XCTAssertGreaterThan(q4.meanKL, q8.meanKL, "int4 loses more than int8")
    }

    /// Greedy decoding with Q8_0 weights follows the original model's greedy path wherever the
    /// original is decisive (its top-2 logit margin above 0.25, twice the largest logit change
    /// Q8_0 makes on this model); an undertrained model has near-ties where any rounding may
    /// choose the other token, and there the comparison stops.
    func testQ8GreedyContinuationMatchesTheOriginal() throws {
        let original = try LoadedModel(path: Self.bundled)
        let reference = try original.transformer()
        let q8 = try LoadedModel(path: try file(.q8_0)).transformer()
        var compared = 0
        for text in QualityReport.defaultPrompts + [prompt] {
            let tokens = original.tokenizer.encode(text, addBOS: true)
            // The original's greedy path and its margins.
            let cache = reference.makeCache()
            var logits = try reference.forward(tokens: tokens, startPosition: 0, cache: cache)
            var path: [Int32] = []
            while path.count < 24 {
                let row = logits.row(0)
                let sorted = row.sorted(by: >)
                if sorted[0] - sorted[1] < 0.25 { break }
                let token = Int32(row.firstIndex(of: sorted[0])!)
                path.append(token)
                logits = try reference.forward(tokens: [token], startPosition: tokens.count + path.count - 1, cache: cache)
            }
            let quantized = try Generator(model: q8).generate(GenerationRequest(prompt: tokens, maxTokens: path.count)).tokens
            XCTAssertEqual(quantized, path, text)
            compared += path.count
        }
        XCTAssertGreaterThanOrEqual(compared, 12, "too few decisive steps to compare")
    }

    static func cosine(_ x: [Float], _ y: [Float]) -> Double {
        var dot = 0.0, xx = 0.0, yy = 0.0
        for (u, v) in zip(x, y) {
            dot += Double(u) * Double(v)
            xx += Double(u) * Double(u)
            yy += Double(v) * Double(v)
        }
        return dot / (xx * yy).squareRoot()
    }
}
