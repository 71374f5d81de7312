/// Turns a checkpoint tensor into `LinearWeights` of some storage. Quantized storages add
/// their own loaders.
public struct WeightLoader: Sendable {
    public let load: @Sendable (TensorSource, String, Int, Int) throws -> LinearWeights

    public init(load: @escaping @Sendable (TensorSource, String, Int, Int) throws -> LinearWeights) {
        self.load = load
    }

    /// Every matrix converted to f32 and multiplied with OpenBLAS.
    public static let float32 = WeightLoader { source, name, outputs, inputs in
        Float32Weights(outputs: outputs, inputs: inputs,
                       values: try source.loadFloat32(name, shape: [outputs, inputs]))
    }
}
