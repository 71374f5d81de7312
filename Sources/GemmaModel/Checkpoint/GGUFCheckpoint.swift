import GemmaQuant

/// A Gemma GGUF file (from `gemma-quantize` or llama.cpp's converter) as a tensor source:
/// the model configuration from the `gemma.*` keys, tensors by their Hugging Face names mapped
/// to llama.cpp's, memory-mapped and handed to the compute code as stored (F32, F16, BF16,
/// Q8_0, Q4_0). Norm weights are stored as 1 + w.
public final class GGUFCheckpoint: TensorSource, @unchecked Sendable {
    public let file: GGUFFile
    public let config: GemmaConfig
    public var normWeightsIncludeOne: Bool { true }
    public var description: String { file.path }

    public init(path: String) throws {
        file = try GGUFFile(path: path)
        typealias Key = GemmaGGUFNames.Key
        let architecture = try file.string(Key.architecture)
        guard architecture == GemmaGGUFNames.architecture else {
            throw CheckpointError.invalidConfigField(file: path, field: Key.architecture,
                                                     detail: "'\(architecture)' is not a Gemma v1 model (expected 'gemma')")
        }
        let hidden = try file.int(Key.embeddingLength)
        let heads = try file.int(Key.headCount)
        // Checked before anything is derived from them (hidden / heads below).
        for (field, value) in [(Key.embeddingLength, hidden), (Key.headCount, heads)] where value <= 0 {
            throw CheckpointError.invalidConfigField(file: path, field: field, detail: "must be positive, found \(value)")
        }
        let embedding = try file.tensor(named: "token_embd.weight")
        guard embedding.dimensions.count == 2, embedding.dimensions[0] == hidden else {
            throw CheckpointError.shapeMismatch(file: path, tensor: "token_embd.weight",
                                                found: embedding.dimensions.reversed(), expected: [-1, hidden])
        }
        var config = GemmaConfig(
            vocabularySize: embedding.dimensions[1],
            hiddenSize: hidden,
            intermediateSize: try file.int(Key.feedForwardLength),
            layerCount: try file.int(Key.blockCount),
            headCount: heads,
            kvHeadCount: file.contains(Key.headCountKV) ? try file.int(Key.headCountKV) : heads,
            headDim: file.contains(Key.keyLength) ? try file.int(Key.keyLength) : hidden / heads,
            rmsNormEpsilon: try file.float(Key.rmsEpsilon),
            ropeTheta: file.contains(Key.ropeFreqBase) ? try file.float(Key.ropeFreqBase) : 10_000,
            contextLength: try file.int(Key.contextLength))
        config.declaredDType = nil
        if file.contains(Key.valueLength), try file.int(Key.valueLength) != config.headDim {
            throw CheckpointError.invalidConfigField(file: path, field: Key.valueLength,
                                                     detail: "differs from \(Key.keyLength) \(config.headDim)")
        }
        try config.validate(path: path, fieldNames: Self.configKeys)
        self.config = config
    }

    /// The GGUF key (or tensor) each config.json field comes from, for errors.
    static let configKeys: [String: String] = {
        typealias Key = GemmaGGUFNames.Key
        return ["vocab_size": "token_embd.weight (its rows are the vocabulary)", "hidden_size": Key.embeddingLength,
                "intermediate_size": Key.feedForwardLength, "num_hidden_layers": Key.blockCount,
                "num_attention_heads": Key.headCount, "num_key_value_heads": Key.headCountKV,
                "head_dim": Key.keyLength, "max_position_embeddings": Key.contextLength,
                "rms_norm_eps": Key.rmsEpsilon, "rope_theta": Key.ropeFreqBase]
    }()

    /// The GGUF tensor for a Hugging Face name, checked against `shape` (PyTorch order).
    private func info(_ name: String, shape: [Int]) throws -> GGUFTensorInfo {
        guard let ggufName = GemmaGGUFNames.ggufName(forHF: name) else {
            throw CheckpointError.missingTensor(tensor: name, searched: file.path)
        }
        guard file.hasTensor(named: ggufName) else {
            throw CheckpointError.missingTensor(tensor: ggufName, searched: file.path)
        }
        let info = try file.tensor(named: ggufName)
        let found = Array(info.dimensions.reversed())
        guard found == shape else {
            throw CheckpointError.shapeMismatch(file: file.path, tensor: ggufName, found: found, expected: shape)
        }
        return info
    }

    public func rawTensor(_ name: String, shape: [Int]) throws -> RawTensor {
        let info = try info(name, shape: shape)
        return RawTensor(type: info.type, shape: shape, bytes: try file.unsafeBytes(of: info), owner: file,
                         isFileMapping: file.isMapped)
    }

    public func loadFloat32(_ name: String, shape: [Int]) throws -> [Float] {
        try file.floats(of: try info(name, shape: shape))
    }
}
