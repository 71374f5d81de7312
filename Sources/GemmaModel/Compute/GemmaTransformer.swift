import Foundation

/// Errors of a forward pass: bad input, never a crash.
public enum ForwardError: Error, CustomStringConvertible, Equatable {
    case tokenOutOfRange(token: Int32, vocabularySize: Int)
    case positionGap(startPosition: Int, cachedPositions: Int)
    case contextExceeded(positions: Int, contextLength: Int)
    case wrongInput(String)

    public var description: String {
        switch self {
        case let .tokenOutOfRange(token, vocabularySize):
            return "token id \(token) is outside the vocabulary (0..<\(vocabularySize))"
        case let .positionGap(start, cached):
            return "segment starts at position \(start) but the sequence has only \(cached) cached positions"
        case let .contextExceeded(positions, contextLength):
            return "\(positions) positions exceed the model's context length \(contextLength)"
        case let .wrongInput(message):
            return message
        }
    }
}

/// Gemma v1, or a contiguous range of its layers (a pipeline stage). The first stage also
/// holds the embedding; the last holds the final norm and uses the embedding as its LM head.
public final class GemmaTransformer: @unchecked Sendable {
    public let config: GemmaConfig
    /// The layers this instance holds.
    public let layerRange: Range<Int>
    /// Token embedding (also the tied LM head); present on the first and the last stage.
    let embedding: LinearWeights?
    let finalNorm: [Float]?
    let layers: [TransformerLayer]
    let inverseFrequencies: [Float]
    /// sqrt(hidden_size) in f32, the scale applied to embeddings.
    let embeddingScale: Float

    public var isFirstStage: Bool { layerRange.lowerBound == 0 }
    public var isLastStage: Bool { layerRange.upperBound == config.layerCount }

    /// Loads layers `layers` (all by default) from a checkpoint. Tensors outside the range are
    /// never read.
    public init(source: TensorSource, layers range: Range<Int>? = nil,
                weightLoader: WeightLoader = .native) throws {
        let config = source.config
        let range = range ?? 0..<config.layerCount
        guard range.lowerBound >= 0, range.upperBound <= config.layerCount, !range.isEmpty else {
            throw ForwardError.wrongInput("layer range \(range.lowerBound)..<\(range.upperBound) is not inside 0..<\(config.layerCount)")
        }
        self.config = config
        layerRange = range
        let hidden = config.hiddenSize
        func norm(_ name: String) throws -> [Float] {
            let w = try source.loadFloat32(name, shape: [hidden])
            return source.normWeightsIncludeOne ? w : w.map { 1 + $0 }
        }
        func matrix(_ name: String, _ outputs: Int, _ inputs: Int) throws -> LinearWeights {
            try weightLoader.load(source, name, outputs, inputs)
        }
        let computesLogits = range.upperBound == config.layerCount
        if computesLogits {
            embedding = try matrix("model.embed_tokens.weight", config.vocabularySize, hidden)
        } else if range.lowerBound == 0 {
            embedding = try weightLoader.loadLookupTable(source, "model.embed_tokens.weight", config.vocabularySize, hidden)
        } else {
            embedding = nil
        }
        finalNorm = range.upperBound == config.layerCount ? try norm("model.norm.weight") : nil
        self.layers = try range.map { i in
            let p = "model.layers.\(i)."
            return TransformerLayer(
                index: i,
                attentionNorm: try norm(p + "input_layernorm.weight"),
                feedForwardNorm: try norm(p + "post_attention_layernorm.weight"),
                query: try matrix(p + "self_attn.q_proj.weight", config.queryWidth, hidden),
                key: try matrix(p + "self_attn.k_proj.weight", config.kvWidth, hidden),
                value: try matrix(p + "self_attn.v_proj.weight", config.kvWidth, hidden),
                output: try matrix(p + "self_attn.o_proj.weight", hidden, config.queryWidth),
                gate: try matrix(p + "mlp.gate_proj.weight", config.intermediateSize, hidden),
                up: try matrix(p + "mlp.up_proj.weight", config.intermediateSize, hidden),
                down: try matrix(p + "mlp.down_proj.weight", hidden, config.intermediateSize))
        }
        inverseFrequencies = RotaryTable.inverseFrequencies(headDim: config.headDim, theta: config.ropeTheta)
        embeddingScale = Float(Double(hidden).squareRoot())
    }

    /// A new, empty KV cache for one sequence over this instance's layers.
    public func makeCache(reserving positions: Int = 0) -> SequenceKVCache {
        SequenceKVCache(layerCount: layers.count, kvWidth: config.kvWidth, reserving: positions)
    }

    /// Bytes of weights held in memory.
    public var weightBytes: Int {
        var total = embedding?.byteCount ?? 0
        total += (finalNorm?.count ?? 0) * 4
        for layer in layers {
            total += [layer.query, layer.key, layer.value, layer.output, layer.gate, layer.up, layer.down]
                .reduce(0) { $0 + $1.byteCount }
            total += (layer.attentionNorm.count + layer.feedForwardNorm.count) * 4
        }
        return total
    }

    /// Scaled embeddings of `tokens`, one row each (first stage only).
    public func embed(_ tokens: [Int32]) throws -> Matrix {
        guard isFirstStage, let embedding else { throw ForwardError.wrongInput("this stage does not hold the embedding") }
        var x = Matrix(rows: tokens.count, columns: config.hiddenSize)
        for token in tokens where token < 0 || Int(token) >= config.vocabularySize {
            throw ForwardError.tokenOutOfRange(token: token, vocabularySize: config.vocabularySize)
        }
        x.storage.withUnsafeMutableBufferPointer { buffer in
            for (r, token) in tokens.enumerated() {
                let row = buffer.baseAddress! + r * config.hiddenSize
                embedding.copyRow(Int(token), into: row)
                for i in 0..<config.hiddenSize { row[i] *= embeddingScale }
            }
        }
        return x
    }

    /// Runs this instance's layers over a batch: `hidden` has one row per token, the rows of
    /// each segment consecutive and in segment order. Keys and values land in the caches.
    public func forwardLayers(_ hidden: inout Matrix, segments: [BatchSegment]) throws {
        guard hidden.columns == config.hiddenSize else {
            throw ForwardError.wrongInput("hidden states have \(hidden.columns) columns, the model has \(config.hiddenSize)")
        }
        guard segments.reduce(0, { $0 + $1.count }) == hidden.rows else {
            throw ForwardError.wrongInput("segments cover \(segments.reduce(0) { $0 + $1.count }) rows, hidden states have \(hidden.rows)")
        }
        var positions: [Int] = []
        positions.reserveCapacity(hidden.rows)
        for segment in segments {
            guard segment.count > 0 else { throw ForwardError.wrongInput("empty segment") }
            guard segment.cache.layerCount == layers.count, segment.cache.kvWidth == config.kvWidth else {
                throw ForwardError.wrongInput("KV cache does not belong to this model's layers")
            }
            guard segment.startPosition >= 0, segment.startPosition <= segment.cache.length else {
                throw ForwardError.positionGap(startPosition: segment.startPosition, cachedPositions: segment.cache.length)
            }
            let end = segment.startPosition + segment.count
            guard end <= config.contextLength else {
                throw ForwardError.contextExceeded(positions: end, contextLength: config.contextLength)
            }
            positions.append(contentsOf: segment.startPosition..<end)
        }
        let ids = segments.map { ObjectIdentifier($0.cache) }
        guard Set(ids).count == ids.count else {
            throw ForwardError.wrongInput("a sequence appears twice in one batch")
        }
        for segment in segments {
            segment.cache.reserve(segment.startPosition + segment.count)
        }
        let rotary = RotaryTable(positions: positions, inverseFrequencies: inverseFrequencies)
        for (localIndex, layer) in layers.enumerated() {
            layer.forward(&hidden, segments: segments, localIndex: localIndex, rotary: rotary, config: config)
        }
        for segment in segments {
            segment.cache.length = segment.startPosition + segment.count
        }
    }

    /// Final norm and LM head over the rows `rows` of `hidden` (last stage only): one row of
    /// vocabulary logits per selected row.
    public func logits(_ hidden: Matrix, rows: [Int]) throws -> Matrix {
        guard let embedding, let finalNorm else {
            throw ForwardError.wrongInput("this stage does not hold the LM head")
        }
        var x = hidden.gatherRows(rows)
        Ops.rmsNorm(&x, scale: finalNorm, epsilon: config.rmsNormEpsilon)
        return embedding(x)
    }

    /// Whole-model forward of one sequence's `tokens` at `startPosition`: returns logits for
    /// every token (`allPositions`) or just the last.
    public func forward(tokens: [Int32], startPosition: Int, cache: SequenceKVCache,
                        allPositions: Bool = false) throws -> Matrix {
        guard !tokens.isEmpty else { throw ForwardError.wrongInput("no tokens") }
        var hidden = try embed(tokens)
        try forwardLayers(&hidden, segments: [BatchSegment(cache: cache, startPosition: startPosition, count: tokens.count)])
        return try logits(hidden, rows: allPositions ? Array(0..<tokens.count) : [tokens.count - 1])
    }
}
