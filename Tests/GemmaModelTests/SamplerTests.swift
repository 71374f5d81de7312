import GemmaModel
import XCTest

/// Sampling: greedy, temperature, top-k, top-p, and determinism by (seed, position).
final class SamplerTests: XCTestCase {
    let logits: [Float] = [1.0, 3.0, 2.0, 3.0, -1.0, 0.5]

    func sample(_ parameters: SamplingParameters, position: Int) -> Int {
        logits.withUnsafeBufferPointer { Sampler.sample($0, parameters: parameters, position: position) }
    }

    func testGreedyPicksTheLowestIdAmongEqualMaxima() {
        XCTAssertEqual(sample(.greedy, position: 0), 1)
    }

    func testTopKOneIsGreedy() {
        XCTAssertEqual(sample(SamplingParameters(temperature: 5, topK: 1, seed: 9), position: 3), 1)
    }

    func testTopKRestrictsCandidates() {
        for position in 0..<200 {
            let token = sample(SamplingParameters(temperature: 2, topK: 3, seed: 1), position: position)
            XCTAssertTrue([1, 2, 3].contains(token))
        }
    }

    func testTopPRestrictsCandidates() {
        // Probabilities at T=1: tokens 1 and 3 hold ~0.33 each, token 2 ~0.12: top-p 0.6 keeps 1 and 3.
        for position in 0..<200 {
            let token = sample(SamplingParameters(temperature: 1, topP: 0.6, seed: 2), position: position)
            XCTAssertTrue([1, 3].contains(token))
        }
    }

    func testDrawDependsOnlyOnSeedAndPosition() {
        let parameters = SamplingParameters(temperature: 1, seed: 42)
        let first = (0..<50).map { sample(parameters, position: $0) }
        let again = (0..<50).reversed().map { sample(parameters, position: $0) }.reversed()
        XCTAssertEqual(first, Array(again))
        let other = (0..<50).map { sample(SamplingParameters(temperature: 1, seed: 43), position: $0) }
        XCTAssertNotEqual(first, other)
    }

    func testSampledFrequenciesFollowTheDistribution() {
        // Two tokens, logits 0 and log(3): probabilities 1/4 and 3/4.
        let two: [Float] = [0, logf(3)]
        let n = 20_000
        let ones = (0..<n).filter { position in
            two.withUnsafeBufferPointer { Sampler.sample($0, parameters: SamplingParameters(temperature: 1, seed: 7), position: position) } == 1
        }.count
        XCTAssertEqual(Double(ones) / Double(n), 0.75, accuracy: 0.02)
    }

    func testParameterValidationNamesTheParameter() {
        XCTAssertThrowsError(try SamplingParameters(temperature: -1).validate()) {
            XCTAssertEqual("\($0)", "temperature must be >= 0, got -1.0")
        }
        XCTAssertThrowsError(try SamplingParameters(topP: 0).validate()) {
            XCTAssertEqual("\($0)", "top_p must be in (0, 1], got 0.0")
        }
        XCTAssertThrowsError(try SamplingParameters(topK: -2).validate())
    }

    func testLogProbability() {
        let two: [Float] = [0, logf(3)]
        let lp = two.withUnsafeBufferPointer { Sampler.logProbability($0, index: 1) }
        XCTAssertEqual(lp, logf(0.75), accuracy: 1e-6)
    }
}
