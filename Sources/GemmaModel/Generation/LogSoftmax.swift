import Foundation

/// log-softmax over one row of raw logits (no temperature or truncation: the model's own
/// distribution, as vLLM and OpenAI report log-probabilities). The normalizer is summed in
/// Double once; each token's log-probability is then one subtraction.
public struct LogSoftmax {
    public let logits: UnsafeBufferPointer<Float>
    /// log of the sum of exp(logit), in Double.
    public let logNormalizer: Double

    public init(_ logits: UnsafeBufferPointer<Float>) {
        self.logits = logits
        var maximum = -Float.infinity
        for value in logits { maximum = max(maximum, value) }
        var sum = 0.0
        let m = Double(maximum)
        for value in logits { sum += exp(Double(value) - m) }
        logNormalizer = m + log(sum)
    }

    /// The log-probability of token `index`.
    public func logprob(_ index: Int) -> Float {
        Float(Double(logits[index]) - logNormalizer)
    }

    /// The `k` most probable tokens, most probable first (lower id first on ties).
    public func top(_ k: Int) -> [Int] {
        RankedLogits.best(k, of: logits)
    }
}
