import CGemmaKernels
import GemmaQuant

/// bf16 or f16 weights used where they lie (usually a memory-mapped checkpoint), at half the
/// memory of f32, multiplied by `gemma_matmul_float` (register tiles that convert each weight
/// vector to f32 once for several activation rows).
public struct HalfPrecisionWeights: LinearWeights, @unchecked Sendable {
    public let outputs: Int
    public let inputs: Int
    public let type: GGMLType
    let bytes: UnsafeRawPointer
    let owner: AnyObject

    public init(type: GGMLType, outputs: Int, inputs: Int, bytes: UnsafeRawPointer, owner: AnyObject) {
        precondition(type == .bf16 || type == .f16, "HalfPrecisionWeights holds BF16 or F16")
        self.type = type
        self.outputs = outputs
        self.inputs = inputs
        self.bytes = bytes
        self.owner = owner
    }

    public var byteCount: Int { outputs * inputs * 2 }

    public func multiply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        gemma_matmul_float(Int32(type.rawValue), bytes, Int64(outputs), Int64(inputs), x, Int64(rows), y, Int64(outputs))
    }

    public func copyRow(_ index: Int, into out: UnsafeMutablePointer<Float>) {
        gemma_convert_rows(Int32(type.rawValue), bytes + index * inputs * 2, 1, Int64(inputs), out)
    }
}
