import Foundation

/// How the next token is chosen. `temperature == 0` means greedy (argmax, lowest id on ties).
public struct SamplingParameters: Sendable, Equatable, Codable {
    public var temperature: Float
    /// Keep only the k most likely tokens; 0 keeps all.
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability reaches `topP`; 1 keeps all.
    public var topP: Float
    public var seed: UInt64

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    public static let greedy = SamplingParameters()

    /// Checks ranges; the message names the parameter.
    public func validate() throws {
        guard temperature.isFinite, temperature >= 0 else { throw SamplingError.invalid("temperature must be >= 0, got \(temperature)") }
        guard topK >= 0 else { throw SamplingError.invalid("top_k must be >= 0, got \(topK)") }
        guard topP.isFinite, topP > 0, topP <= 1 else { throw SamplingError.invalid("top_p must be in (0, 1], got \(topP)") }
    }
}

/// A sampling parameter out of range.
public enum SamplingError: Error, CustomStringConvertible, Equatable {
    case invalid(String)
    public var description: String {
        switch self { case let .invalid(message): return message }
    }
}

/// Chooses tokens from logits. The random draw for a token depends only on the seed and the
/// token's position in the sequence, so a sequence samples the same text whether it runs alone
/// or in a batch, and after a replay from its history.
public enum Sampler {
    /// A uniform draw in [0, 1) determined by (seed, position): SplitMix64 over both.
    public static func uniform(seed: UInt64, position: Int) -> Double {
        var z = seed &+ 0x9E37_79B9_7F4A_7C15 &* (UInt64(truncatingIfNeeded: position) &+ 1)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z = z ^ (z >> 31)
        return Double(z >> 11) * 0x1.0p-53
    }

    /// The index of the largest logit (the lowest index among equals).
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        var bestValue = -Float.infinity
        for i in 0..<logits.count where logits[i] > bestValue {
            best = i
            bestValue = logits[i]
        }
        return best
    }

    /// Samples the token at `position` from `logits`: temperature, then top-k, then top-p over
    /// the renormalised distribution, then one draw.
    public static func sample(_ logits: UnsafeBufferPointer<Float>, parameters: SamplingParameters,
                              position: Int) -> Int {
        if parameters.temperature == 0 || parameters.topK == 1 { return argmax(logits) }
        // Candidates in decreasing logit order (ties by id, for determinism).
        var candidates = Array(0..<logits.count)
        let k = parameters.topK > 0 ? min(parameters.topK, logits.count) : logits.count
        candidates.sort { logits[$0] != logits[$1] ? logits[$0] > logits[$1] : $0 < $1 }
        candidates.removeSubrange(k...)
        let inverseTemperature = 1 / Double(parameters.temperature)
        let maximum = Double(logits[candidates[0]])
        var weights = candidates.map { exp((Double(logits[$0]) - maximum) * inverseTemperature) }
        var total = weights.reduce(0, +)
        if parameters.topP < 1 {
            var cumulative = 0.0
            var keep = weights.count
            for (i, w) in weights.enumerated() {
                cumulative += w / total
                if cumulative >= Double(parameters.topP) {
                    keep = i + 1
                    break
                }
            }
            weights.removeSubrange(keep...)
            total = weights.reduce(0, +)
        }
        let target = uniform(seed: parameters.seed, position: position) * total
        var cumulative = 0.0
        for (i, w) in weights.enumerated() {
            cumulative += w
            if target < cumulative { return candidates[i] }
        }
        return candidates[weights.count - 1]
    }

    /// log softmax of `logits` at `index` (a token's log-probability under the model).
    public static func logProbability(_ logits: UnsafeBufferPointer<Float>, index: Int) -> Float {
        var maximum = -Float.infinity
        for v in logits { maximum = max(maximum, v) }
        var sum = 0.0
        for v in logits { sum += exp(Double(v - maximum)) }
        return Float(Double(logits[index] - maximum) - log(sum))
    }
}
