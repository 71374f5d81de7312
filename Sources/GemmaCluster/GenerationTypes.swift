import GemmaWire

/// One completion the router runs: prompt ids, how to sample, and when to stop.
public struct ClusterGenerationRequest: Sendable {
    public var prompt: [Int32]
    public var sampling: Gemma_V1_SamplingParams
    public var maxTokens: Int
    /// Sampled ids that end the completion (eos, end_of_turn); not part of the output.
    public var stopTokens: Set<Int32>
    /// Texts that end the completion; the output stops before the first of them.
    public var stopStrings: [String]
    public var logprobs: Bool
    public var topLogprobs: Int

    public init(prompt: [Int32], sampling: Gemma_V1_SamplingParams = .init(), maxTokens: Int,
                stopTokens: Set<Int32> = [], stopStrings: [String] = [], logprobs: Bool = false, topLogprobs: Int = 0) {
        self.prompt = prompt
        self.sampling = sampling
        self.maxTokens = maxTokens
        self.stopTokens = stopTokens
        self.stopStrings = stopStrings
        self.logprobs = logprobs
        self.topLogprobs = topLogprobs
    }
}

/// A generated token with what the last stage reported about it.
public struct GeneratedToken: Sendable, Equatable {
    public var token: Int32
    public var logprob: Float?
    public var topLogprobs: [(token: Int32, logprob: Float)]

    public static func == (a: GeneratedToken, b: GeneratedToken) -> Bool {
        a.token == b.token && a.logprob == b.logprob && a.topLogprobs.map(\.token) == b.topLogprobs.map(\.token)
    }
}

/// Why a completion ended (OpenAI's `finish_reason`).
public enum ClusterFinishReason: String, Sendable {
    case stop
    case length
}

/// What a running completion reports, in order: text deltas, then one `finished`.
public enum GenerationEvent: Sendable {
    /// New text (whole characters) and the tokens that produced it.
    case delta(text: String, tokens: [GeneratedToken])
    case finished(reason: ClusterFinishReason, promptTokens: Int, completionTokens: Int)
}

/// Why the cluster cannot serve a request.
public enum ClusterError: Error, CustomStringConvertible, Equatable {
    /// Too many requests are waiting; retry after the given seconds (HTTP 429).
    case overloaded(retryAfterSeconds: Int)
    /// A stage stayed unreachable past the recovery bound (HTTP 503).
    case pipelineDown(String)
    /// The prompt and max_tokens do not fit the model's context (HTTP 400).
    case promptTooLong(tokens: Int, limit: Int)
    case invalidRequest(String)

    public var description: String {
        switch self {
        case let .overloaded(seconds): return "the cluster is at capacity; retry in \(seconds) s"
        case let .pipelineDown(message): return "the pipeline is unavailable: \(message)"
        case let .promptTooLong(tokens, limit): return "the prompt has \(tokens) tokens, more than the context of \(limit) allows"
        case let .invalidRequest(message): return message
        }
    }
}
