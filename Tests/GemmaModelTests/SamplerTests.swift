import GemmaModel
import GemmaTestSupport
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
        let lp = two.withUnsafeBufferPointer { LogSoftmax($0).logprob(1) }
        XCTAssertEqual(lp, logf(0.75), accuracy: 1e-6)
    }

    /// The sampler's definition written out the slow way: rank every logit (larger first, lower
    /// id first on ties), keep the top k, keep the smallest prefix holding top_p of their mass,
    /// draw by inverse CDF down the ranking (or in id order when nothing was cut).
    static func referenceSample(_ logits: [Float], _ p: SamplingParameters, position: Int) -> Int {
        let ranked = logits.indices.sorted { logits[$0] != logits[$1] ? logits[$0] > logits[$1] : $0 < $1 }
        let maximum = Double(logits[ranked[0]])
        let weight = { (i: Int) in exp((Double(logits[i]) - maximum) / Double(p.temperature)) }
        var kept = p.topK > 0 ? Array(ranked.prefix(p.topK)) : ranked
        if p.topP < 1 {
            let mass = kept.map(weight).reduce(0, +)
            var cumulative = 0.0
            if let cut = kept.firstIndex(where: { cumulative += weight($0); return cumulative / mass >= Double(p.topP) }) {
                kept = Array(kept.prefix(cut + 1))
            }
        }
        if kept.count == logits.count { kept = Array(logits.indices) }
        let target = Sampler.uniform(seed: p.seed, position: position) * kept.map(weight).reduce(0, +)
        var cumulative = 0.0
        for i in kept {
            cumulative += weight(i)
            if target < cumulative { return i }
        }
        return kept.last!
    }

    func testLargeVocabularyMatchesTheDefinition() {
        // 20,000 logits with many exact ties (values on a coarse grid), as a random model gives.
        var generator = SplitMix64(seed: 5)
        let logits = (0 ..< 20_000).map { _ in Float(Int.random(in: -300 ... 300, using: &generator)) / 100 }
        let settings: [SamplingParameters] = [
            .init(temperature: 0.8, seed: 1), .init(temperature: 0.3, topK: 7, seed: 2),
            .init(temperature: 1, topK: 600, seed: 3), .init(temperature: 0.9, topP: 0.95, seed: 4),
            .init(temperature: 0.1, topP: 0.5, seed: 5), .init(temperature: 2, topK: 3000, topP: 0.8, seed: 6),
            .init(temperature: 0.05, topP: 0.999, seed: 7),
        ]
        logits.withUnsafeBufferPointer { buffer in
            for p in settings {
                for position in 0 ..< 40 {
                    XCTAssertEqual(Sampler.sample(buffer, parameters: p, position: position),
                                   Self.referenceSample(logits, p, position: position), "\(p) at \(position)")
                }
            }
        }
    }
}

