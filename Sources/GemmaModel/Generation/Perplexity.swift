import Foundation

/// Perplexity as llama.cpp's `llama-perplexity` defines it: the token stream (with its leading
/// BOS) cut into chunks of `contextLength` tokens, each evaluated from an empty cache with its
/// first token replaced by BOS, and only the second half of each chunk scored (logits at
/// positions ctx/2 ... ctx-2 predicting the next token).
public struct PerplexityEvaluator: Sendable {
    public let model: GemmaTransformer
    public let contextLength: Int
    public let bos: Int32

    /// The running result after some chunks.
    public struct Result: Sendable {
        public var chunks = 0
        public var scoredTokens = 0
        var sum = 0.0
        var sumOfSquares = 0.0
        /// Mean negative log-likelihood of each chunk's scored tokens.
        public var chunkMeanNLL: [Double] = []

        public var meanNLL: Double { sum / Double(scoredTokens) }
        public var perplexity: Double { exp(meanNLL) }
        /// llama.cpp's standard error of the perplexity.
        public var standardError: Double {
            let mean = meanNLL
            let variance = sumOfSquares / Double(scoredTokens) - mean * mean
            guard variance > 0, scoredTokens > 1 else { return .nan }
            return perplexity * (variance / Double(scoredTokens - 1)).squareRoot()
        }
    }

    public init(model: GemmaTransformer, contextLength: Int, bos: Int32) throws {
        guard contextLength >= 4, contextLength <= model.config.contextLength else {
            throw ForwardError.wrongInput("--ctx \(contextLength) must be between 4 and the model's context length \(model.config.contextLength)")
        }
        self.model = model
        self.contextLength = contextLength
        self.bos = bos
    }

    /// Chunks that `tokenCount` tokens make.
    public func chunkCount(tokenCount: Int) -> Int { tokenCount / contextLength }

    /// Evaluates all whole chunks of `tokens` (which start with BOS), reporting after each.
    public func evaluate(_ tokens: [Int32], progress: (Result) -> Void = { _ in }) throws -> Result {
        let chunks = chunkCount(tokenCount: tokens.count)
        guard chunks >= 1 else {
            throw ForwardError.wrongInput("the text has \(tokens.count) tokens, fewer than one chunk of \(contextLength)")
        }
        let first = contextLength / 2
        var result = Result()
        for chunk in 0..<chunks {
            var input = Array(tokens[chunk * contextLength..<(chunk + 1) * contextLength])
            input[0] = bos
            var hidden = try model.embed(input)
            try model.forwardLayers(&hidden, segments: [BatchSegment(cache: model.makeCache(reserving: contextLength),
                                                                     startPosition: 0, count: contextLength)])
            let logits = try model.logits(hidden, rows: Array(first..<contextLength - 1))
            var chunkSum = 0.0
            for (row, position) in (first..<contextLength - 1).enumerated() {
                let target = Int(tokens[chunk * contextLength + position + 1])
                let logProbability = logits.storage.withUnsafeBufferPointer { buffer in
                    LogSoftmax(UnsafeBufferPointer(rebasing: buffer[row * logits.columns..<(row + 1) * logits.columns]))
                        .logprob(target)
                }
                let nll = -Double(logProbability)
                chunkSum += nll
                result.sum += nll
                result.sumOfSquares += nll * nll
            }
            let scored = contextLength - 1 - first
            result.scoredTokens += scored
            result.chunks += 1
            result.chunkMeanNLL.append(chunkSum / Double(scored))
            progress(result)
        }
        return result
    }
}
