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
        guard k > 0 else { return [] }
        var best: [Int] = []
        best.reserveCapacity(k + 1)
        for index in 0 ..< logits.count {
            let value = logits[index]
            if best.count == k, value <= logits[best[k - 1]] { continue }
            // Insert after every entry at least as large (ids ascend, so ties keep the lower id first).
            var position = best.count
            while position > 0 && logits[best[position - 1]] < value { position -= 1 }
            best.insert(index, at: position)
            if best.count > k { best.removeLast() }
        }
        return best
    }
}
