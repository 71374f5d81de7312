/// What to generate for one prompt.
public struct GenerationRequest: Sendable {
    public var prompt: [Int32]
    public var maxTokens: Int
    public var sampling: SamplingParameters
    /// Tokens that end generation (not emitted); empty when eos is to be ignored.
    public var stopTokens: Set<Int32>

    public init(prompt: [Int32], maxTokens: Int, sampling: SamplingParameters = .greedy, stopTokens: Set<Int32> = []) {
        self.prompt = prompt
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stopTokens = stopTokens
    }
}

/// Why generation ended.
public enum FinishReason: String, Sendable {
    /// A stop token was sampled.
    case stop
    /// `maxTokens` were generated, or the context is full.
    case length
}

/// Single-process generation: prefill the prompt in one batched pass, then decode one token at
/// a time with the KV cache.
public struct Generator: Sendable {
    public let model: GemmaTransformer

    public init(model: GemmaTransformer) {
        self.model = model
    }

    /// Generates tokens, calling `onToken` with each as soon as it is chosen. Returns the
    /// tokens and why generation stopped.
    @discardableResult
    public func generate(_ request: GenerationRequest,
                         onToken: (Int32) throws -> Void = { _ in }) throws -> (tokens: [Int32], finish: FinishReason) {
        try request.sampling.validate()
        guard !request.prompt.isEmpty else { throw ForwardError.wrongInput("the prompt is empty") }
        guard request.prompt.count < model.config.contextLength else {
            throw ForwardError.contextExceeded(positions: request.prompt.count, contextLength: model.config.contextLength)
        }
        let limit = min(request.maxTokens, model.config.contextLength - request.prompt.count)
        let cache = model.makeCache(reserving: request.prompt.count + limit)
        var logits = try model.forward(tokens: request.prompt, startPosition: 0, cache: cache)
        var generated: [Int32] = []
        while generated.count < limit {
            let position = request.prompt.count + generated.count
            let token = Int32(logits.storage.withUnsafeBufferPointer {
                Sampler.sample($0, parameters: request.sampling, position: position)
            })
            if request.stopTokens.contains(token) { return (generated, .stop) }
            generated.append(token)
            try onToken(token)
            if generated.count == limit { break }
            logits = try model.forward(tokens: [token], startPosition: position, cache: cache)
        }
        return (generated, .length)
    }
}
