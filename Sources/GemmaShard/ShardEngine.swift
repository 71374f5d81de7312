import Foundation
import GemmaModel

/// A pipeline stage: layers `[a, b)` of a Gemma model, the KV caches of the sequences it
/// serves, and `forward(_:hiddenDType:)` over batches of sequence segments.
///
/// The first stage embeds token ids; the others take the previous stage's hidden states. A
/// non-last stage returns the hidden states of every row; the last runs the final norm and
/// the tied LM head on each segment's last row and samples one token per segment (logits never
/// leave it).
///
/// Forward is idempotent by (sequence, start position): a segment that starts at or before
/// the end of its sequence's cached positions truncates the cache to its start and recomputes,
/// so a retry writes the same values and returns the same result. A request that is refused
/// (`ShardError`) changes nothing.
///
/// Not thread-safe: run `forward` and `release` from one thread at a time (`ShardService` runs
/// them on one dedicated thread). `status` may be read from any thread.
public final class ShardEngine: @unchecked Sendable {
    /// Limits of a stage.
    public struct Configuration: Sendable {
        /// The KV cache budget in bytes.
        public var kvCacheBytes: Int
        /// Most positions (rows) in one forward batch; bounds the memory of the activations.
        public var maxBatchTokens: Int
        /// Most alternatives `topLogprobs` may ask for (OpenAI's limit is 20).
        public var maxTopLogprobs: Int

        /// Limits; 1 GiB of KV cache, 8192 rows a batch, 20 alternatives.
        public init(kvCacheBytes: Int = 1 << 30, maxBatchTokens: Int = 8192, maxTopLogprobs: Int = 20) {
            self.kvCacheBytes = kvCacheBytes
            self.maxBatchTokens = maxBatchTokens
            self.maxTopLogprobs = maxTopLogprobs
        }
    }

    /// The layers held (and, on the first and last stage, the embedding and final norm).
    public let transformer: GemmaTransformer
    /// The KV caches.
    public let pool: KVCachePool
    /// Limits.
    public let configuration: Configuration
    /// SHA-256 of the whole model (the same on every stage of it).
    public let fingerprint: String

    public var config: GemmaConfig { transformer.config }
    public var layerRange: Range<Int> { transformer.layerRange }
    public var isFirstStage: Bool { transformer.isFirstStage }
    public var isLastStage: Bool { transformer.isLastStage }

    /// A stage over `layers` (all by default) of the model in `source`.
    ///
    /// - Parameter fingerprint: the model's fingerprint; nil computes it from `source`
    ///   (`ModelFingerprint.of`).
    /// - Throws: `CheckpointError` / `ForwardError` when the layers cannot be loaded,
    ///   `ShardError.invalidArgument` for a bad range or a source that cannot be fingerprinted.
    public init(source: TensorSource, layers: Range<Int>? = nil, configuration: Configuration = Configuration(),
                fingerprint: String? = nil, weightLoader: WeightLoader = .native) throws {
        let config = source.config
        if let layers, layers.isEmpty || layers.lowerBound < 0 || layers.upperBound > config.layerCount {
            throw ShardError.invalidArgument("layers \(layers.lowerBound)-\(layers.upperBound) are not a non-empty range inside 0-\(config.layerCount) (end exclusive)")
        }
        guard configuration.kvCacheBytes >= 0, configuration.maxBatchTokens > 0, configuration.maxTopLogprobs >= 0 else {
            throw ShardError.invalidArgument("the KV cache budget and the batch and top-logprobs limits cannot be negative")
        }
        self.fingerprint = try fingerprint ?? ModelFingerprint.of(source)
        transformer = try GemmaTransformer(source: source, layers: layers, weightLoader: weightLoader)
        pool = KVCachePool(capacityBytes: configuration.kvCacheBytes, layerCount: transformer.layerRange.count,
                           kvWidth: config.kvWidth)
        self.configuration = configuration
    }

    /// A stage over `layers` of the model at `path`: a Hugging Face checkpoint directory or a
    /// `.gguf` file (no tokenizer needed).
    public convenience init(modelPath path: String, layers: Range<Int>? = nil,
                            configuration: Configuration = Configuration()) throws {
        try self.init(source: try Self.openCheckpoint(path), layers: layers, configuration: configuration)
    }

    /// Opens a checkpoint directory (safetensors) or a GGUF file, memory-mapped.
    public static func openCheckpoint(_ path: String) throws -> TensorSource {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CheckpointError.unreadable(file: path, reason: "no such file or directory")
        }
        return isDirectory.boolValue ? try SafetensorsCheckpoint(directory: path) : try GGUFCheckpoint(path: path)
    }

    /// What the stage holds and how full its KV cache is (safe from any thread).
    public var status: ShardStatus {
        ShardStatus(firstLayer: layerRange.lowerBound, endLayer: layerRange.upperBound, layerCount: config.layerCount,
                    hiddenSize: config.hiddenSize, vocabularySize: config.vocabularySize,
                    contextLength: config.contextLength, isFirst: isFirstStage, isLast: isLastStage,
                    kvCapacityBytes: pool.capacityBytes, kvUsedBytes: pool.usedBytes,
                    kvBytesPerPosition: pool.bytes(positions: 1), activeSequences: pool.count,
                    modelFingerprint: fingerprint)
    }

    /// Frees the KV caches of `ids`; returns how many held one.
    @discardableResult
    public func release(_ ids: [UInt64]) -> Int {
        pool.release(ids)
    }

    /// Runs a batch of segments through the stage.
    ///
    /// - Parameter hiddenDType: the element type of the hidden states a non-last stage returns.
    /// - Returns: `.hidden` (all rows, segment order) on a non-last stage, `.sampled` (one
    ///   token per segment, request order) on the last.
    /// - Throws: `ShardError`: `.invalidArgument` for a malformed batch, `.unknownSequence` /
    ///   `.positionGap` when a segment does not continue its sequence's cache,
    ///   `.kvCacheExhausted` when the batch does not fit the budget. Nothing changes then.
    public func forward(_ segments: [ShardSegment], hiddenDType: HiddenDType = .bf16) throws(ShardError) -> ShardOutput {
        var hidden = try validatedInput(segments)
        let prepared = try pool.prepare(segments.map { ($0.sequenceID, $0.startPosition, $0.input.count, $0.reservePositions) })
        do {
            let batch = zip(prepared.caches, segments).map { cache, segment in
                BatchSegment(cache: cache, startPosition: segment.startPosition, count: segment.input.count)
            }
            try transformer.forwardLayers(&hidden, segments: batch)
        } catch {
            pool.release(prepared.created)
            throw .internalError("the forward pass failed: \(error)")
        }
        guard isLastStage else {
            return .hidden(HiddenStates(encoding: hidden, as: hiddenDType))
        }
        return .sampled(try sample(hidden, segments))
    }

    /// Checks a batch against the model and builds its input rows (embeddings or the decoded
    /// hidden states); touches no cache.
    private func validatedInput(_ segments: [ShardSegment]) throws(ShardError) -> Matrix {
        guard !segments.isEmpty else { throw .invalidArgument("the batch has no segments") }
        let hiddenSize = config.hiddenSize
        var seen = Set<UInt64>()
        var rows = 0
        for (index, segment) in segments.enumerated() {
            let name = "segments[\(index)] (sequence \(segment.sequenceID))"
            guard seen.insert(segment.sequenceID).inserted else {
                throw .invalidArgument("\(name): sequence \(segment.sequenceID) appears more than once in the batch")
            }
            let count = segment.input.count
            guard count > 0 else { throw .invalidArgument("\(name) is empty") }
            guard segment.startPosition >= 0 else {
                throw .invalidArgument("\(name) starts at a negative position \(segment.startPosition)")
            }
            guard count <= config.contextLength - segment.startPosition else {
                throw .invalidArgument("\(name) starts at \(segment.startPosition) with \(count) positions, past the model's context length \(config.contextLength)")
            }
            guard segment.reservePositions >= 0, segment.reservePositions <= config.contextLength else {
                throw .invalidArgument("\(name) reserves \(segment.reservePositions) positions, more than the model's context length \(config.contextLength)")
            }
            rows += count
            guard rows <= configuration.maxBatchTokens else {
                throw .invalidArgument("the batch has more than \(configuration.maxBatchTokens) positions (this stage's limit); split it")
            }
            switch segment.input {
            case .tokens(let tokens):
                guard isFirstStage else {
                    throw .invalidArgument("\(name) brings token ids, but this stage (layers \(layerRange.lowerBound)-\(layerRange.upperBound)) is not the first and takes hidden states")
                }
                if let bad = tokens.first(where: { $0 < 0 || Int($0) >= config.vocabularySize }) {
                    throw .invalidArgument("\(name): token id \(bad) is outside the vocabulary (0..<\(config.vocabularySize))")
                }
            case .hidden(let states):
                guard !isFirstStage else {
                    throw .invalidArgument("\(name) brings hidden states, but this stage holds the embedding and takes token ids")
                }
                guard states.columns == hiddenSize else {
                    throw .invalidArgument("\(name): hidden states have \(states.columns) columns, the model's hidden size is \(hiddenSize)")
                }
                let expected = states.rows * states.columns * states.dtype.byteWidth
                guard states.data.count == expected else {
                    throw .invalidArgument("\(name): \(states.rows) x \(states.columns) \(states.dtype) hidden states need \(expected) bytes, the tensor has \(states.data.count)")
                }
            }
            if isLastStage {
                do {
                    try segment.sampling.validate()
                } catch {
                    throw .invalidArgument("\(name): sampling: \(error)")
                }
                guard segment.topLogprobs >= 0, segment.topLogprobs <= min(configuration.maxTopLogprobs, config.vocabularySize) else {
                    throw .invalidArgument("\(name): top_logprobs is \(segment.topLogprobs), at most \(min(configuration.maxTopLogprobs, config.vocabularySize)) are served")
                }
            }
        }

        if isFirstStage {
            let tokens = segments.flatMap { segment -> [Int32] in
                if case .tokens(let tokens) = segment.input { return tokens }
                return []
            }
            do {
                return try transformer.embed(tokens)
            } catch {
                throw .invalidArgument("\(error)")
            }
        }
        var storage: [Float] = []
        storage.reserveCapacity(rows * hiddenSize)
        for (index, segment) in segments.enumerated() {
            guard case .hidden(let states) = segment.input else { continue }
            let values = states.floats()
            if let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw .invalidArgument("segments[\(index)] (sequence \(segment.sequenceID)): hidden state row \(bad / hiddenSize), column \(bad % hiddenSize) is \(values[bad]), not a finite number")
            }
            storage.append(contentsOf: values)
        }
        return Matrix(rows: rows, columns: hiddenSize, storage: storage)
    }

    /// Final norm, LM head and sampling on each segment's last row.
    private func sample(_ hidden: Matrix, _ segments: [ShardSegment]) throws(ShardError) -> [SampledToken] {
        var lastRows: [Int] = []
        var end = 0
        for segment in segments {
            end += segment.input.count
            lastRows.append(end - 1)
        }
        let logits: Matrix
        do {
            logits = try transformer.logits(hidden, rows: lastRows)
        } catch {
            throw .internalError("the LM head failed: \(error)")
        }
        let vocabulary = logits.columns
        return logits.storage.withUnsafeBufferPointer { all in
            segments.enumerated().map { index, segment in
                let row = UnsafeBufferPointer(rebasing: all[index * vocabulary ..< (index + 1) * vocabulary])
                let position = segment.startPosition + segment.input.count
                let token = Sampler.sample(row, parameters: segment.sampling, position: position)
                var sampled = SampledToken(sequenceID: segment.sequenceID, token: Int32(token))
                if segment.wantLogprobs || segment.topLogprobs > 0 {
                    let logSoftmax = LogSoftmax(row)
                    if segment.wantLogprobs { sampled.logprob = logSoftmax.logprob(token) }
                    sampled.topLogprobs = logSoftmax.top(segment.topLogprobs).map {
                        TokenLogprob(token: Int32($0), logprob: logSoftmax.logprob($0))
                    }
                }
                return sampled
            }
        }
    }
}
