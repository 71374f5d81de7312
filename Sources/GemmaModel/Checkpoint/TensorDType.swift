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
