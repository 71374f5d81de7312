/// The element types a float checkpoint can store.
public enum TensorDType: String, Sendable, CaseIterable {
    case f32 = "F32"
    case f16 = "F16"
    case bf16 = "BF16"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        }
    }

    /// The dtype a Hugging Face config names (`torch_dtype` / `dtype`), or nil if unknown.
    public init?(configName: String) {
        switch configName {
        case "float32": self = .f32
        case "float16": self = .f16
        case "bfloat16": self = .bf16
        default: return nil
        }
    }
}

/// Converts raw little-endian elements of `dtype` to f32, writing `count` values to `out`.
func convertToFloat32(_ source: UnsafeRawBufferPointer, dtype: TensorDType, count: Int,
                      into out: UnsafeMutablePointer<Float>) {
    switch dtype {
    case .f32:
        precondition(source.count >= count * 4)
        for i in 0..<count {
            out[i] = Float(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
        }
    case .bf16:
        precondition(source.count >= count * 2)
        for i in 0..<count {
            let bits = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
            out[i] = Float(bitPattern: UInt32(bits) << 16)
        }
    case .f16:
        precondition(source.count >= count * 2)
        for i in 0..<count {
            let bits = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
            out[i] = Float(Float16(bitPattern: bits))
        }
    }
}
