import GemmaQuant

/// Turns a checkpoint tensor into `LinearWeights` of some storage. Quantized storages add
/// their own loaders.
public struct WeightLoader: Sendable {
    public let load: @Sendable (TensorSource, String, Int, Int) throws -> LinearWeights
    /// A matrix only ever looked up by row (the embedding of a first stage that does not also
    /// compute the logits); by default the same as `load`.
    public let loadLookupTable: @Sendable (TensorSource, String, Int, Int) throws -> LinearWeights

    public init(load: @escaping @Sendable (TensorSource, String, Int, Int) throws -> LinearWeights,
                loadLookupTable: (@Sendable (TensorSource, String, Int, Int) throws -> LinearWeights)? = nil) {
        self.load = load
        self.loadLookupTable = loadLookupTable ?? load
    }

    /// Every matrix converted to f32 (the f32 kernels; OpenBLAS sgemm for 64 rows and more).
    public static let float32 = WeightLoader { source, name, outputs, inputs in
        Float32Weights(outputs: outputs, inputs: inputs,
                       values: try source.loadFloat32(name, shape: [outputs, inputs]))
    }

    /// Weights used as stored: f32 copied; bf16 and f16 computed on in place (memory-mapped);
    /// Q8_0 and Q4_0 packed once into the kernels' layout (the same size, the mapped pages
    /// released), so resident memory stays close to the file's size. A lookup table stays
    /// mapped as stored, so only the rows looked up become resident.
    public static let native = WeightLoader(load: loadNative, loadLookupTable: { source, name, outputs, inputs in
        let raw = try source.rawTensor(name, shape: [outputs, inputs])
        guard raw.type == .q8_0 || raw.type == .q4_0 else { return try loadNative(source, name, outputs, inputs) }
        return QuantizedWeights(type: raw.type, outputs: outputs, inputs: inputs, bytes: raw.bytes.baseAddress!,
                                owner: raw.owner, pack: false)
    })

    @Sendable private static func loadNative(_ source: TensorSource, _ name: String, _ outputs: Int, _ inputs: Int) throws -> LinearWeights {
        let raw = try source.rawTensor(name, shape: [outputs, inputs])
        switch raw.type {
        case .f32:
            return Float32Weights(outputs: outputs, inputs: inputs,
                                  values: try source.loadFloat32(name, shape: [outputs, inputs]))
        case .bf16, .f16:
            return HalfPrecisionWeights(type: raw.type, outputs: outputs, inputs: inputs,
                                        bytes: raw.bytes.baseAddress!, owner: raw.owner)
        case .q8_0, .q4_0:
            return QuantizedWeights(type: raw.type, outputs: outputs, inputs: inputs,
                                    bytes: raw.bytes.baseAddress!, owner: raw.owner, releaseSource: raw.isFileMapping)
        default:
            throw CheckpointError.unsupportedDType(file: source.description, tensor: name, dtype: "\(raw.type)")
        }
    }
}
