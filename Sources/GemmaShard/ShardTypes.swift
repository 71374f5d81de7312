import Foundation
import GemmaModel

/// Consecutive positions of one sequence in a forward batch.
public struct ShardSegment: Sendable, Equatable {
    /// What a segment brings to the stage.
    public enum Input: Sendable, Equatable {
        /// Token ids (the first stage).
        case tokens([Int32])
        /// The previous stage's hidden states, one row per position (the other stages).
        case hidden(HiddenStates)

        /// Positions covered.
        public var count: Int {
            switch self {
            case .tokens(let tokens): return tokens.count
            case .hidden(let hidden): return hidden.rows
            }
        }
    }

    public var sequenceID: UInt64
    /// Position of the segment's first token in its sequence.
    public var startPosition: Int
    public var input: Input
    /// Last stage: how to pick the token after the segment.
    public var sampling: SamplingParameters
    /// Last stage: report the sampled token's log-probability.
    public var wantLogprobs: Bool
    /// Last stage: report this many most likely alternatives.
    public var topLogprobs: Int
    /// Positions the sequence may reach in all; its KV cache is reserved that large at once
    /// (0: grow as needed).
    public var reservePositions: Int

    public init(sequenceID: UInt64, startPosition: Int, input: Input, sampling: SamplingParameters = .greedy,
                wantLogprobs: Bool = false, topLogprobs: Int = 0, reservePositions: Int = 0) {
        self.sequenceID = sequenceID
        self.startPosition = startPosition
        self.input = input
        self.sampling = sampling
        self.wantLogprobs = wantLogprobs
        self.topLogprobs = topLogprobs
        self.reservePositions = reservePositions
    }
}

/// One token and its log-probability.
public struct TokenLogprob: Sendable, Equatable {
    public var token: Int32
    public var logprob: Float

    public init(token: Int32, logprob: Float) {
        self.token = token
        self.logprob = logprob
    }
}

/// The token sampled after one segment (last stage).
public struct SampledToken: Sendable, Equatable {
    public var sequenceID: UInt64
    public var token: Int32
    /// log-softmax of the raw logits at `token`, when asked for.
    public var logprob: Float?
    /// The most likely tokens by raw logit, most likely first, when asked for.
    public var topLogprobs: [TokenLogprob]

    public init(sequenceID: UInt64, token: Int32, logprob: Float? = nil, topLogprobs: [TokenLogprob] = []) {
        self.sequenceID = sequenceID
        self.token = token
        self.logprob = logprob
        self.topLogprobs = topLogprobs
    }
}

/// What a forward batch returns.
public enum ShardOutput: Sendable, Equatable {
    /// Non-last stage: hidden states of every row, segments in request order.
    case hidden(HiddenStates)
    /// Last stage: one sampled token per segment, in request order.
    case sampled([SampledToken])
}

/// What a stage holds and how full its KV cache is.
public struct ShardStatus: Sendable, Equatable {
    /// The stage holds layers `firstLayer ..< endLayer`.
    public var firstLayer: Int
    public var endLayer: Int
    /// Layers in the whole model.
    public var layerCount: Int
    public var hiddenSize: Int
    public var vocabularySize: Int
    public var contextLength: Int
    public var isFirst: Bool
    public var isLast: Bool
    /// The KV cache budget and what the sequences hold of it.
    public var kvCapacityBytes: Int
    public var kvUsedBytes: Int
    /// Bytes one position of one sequence takes in the cache.
    public var kvBytesPerPosition: Int
    public var activeSequences: Int
    /// SHA-256 of the model (see `ModelFingerprint`), 64 lowercase hex digits.
    public var modelFingerprint: String
}
