/// Everything that can be wrong with a checkpoint on disk. Each case names the file,
/// and where it applies the tensor or config field, so that a user can act on it.
public enum CheckpointError: Error, CustomStringConvertible, Equatable {
    case unreadable(file: String, reason: String)
    case truncated(file: String, detail: String)
    case badHeader(file: String, detail: String)
    case offsetsOutOfRange(file: String, tensor: String, detail: String)
    case overlappingTensors(file: String, tensor: String, other: String)
    case unsupportedDType(file: String, tensor: String, dtype: String)
    case dtypeMismatch(file: String, tensor: String, found: String, expected: String)
    case shapeMismatch(file: String, tensor: String, found: [Int], expected: [Int])
    case missingTensor(tensor: String, searched: String)
    case missingConfigField(file: String, field: String)
    case invalidConfigField(file: String, field: String, detail: String)
    case noWeights(directory: String)
    case badIndex(file: String, detail: String)

    public var description: String {
        switch self {
        case let .unreadable(file, reason):
            return "\(file): cannot read: \(reason)"
        case let .truncated(file, detail):
            return "\(file): truncated: \(detail)"
        case let .badHeader(file, detail):
            return "\(file): bad header: \(detail)"
        case let .offsetsOutOfRange(file, tensor, detail):
            return "\(file): tensor '\(tensor)': data offsets out of range: \(detail)"
        case let .overlappingTensors(file, tensor, other):
            return "\(file): tensor '\(tensor)' overlaps tensor '\(other)'"
        case let .unsupportedDType(file, tensor, dtype):
            return "\(file): tensor '\(tensor)' has unsupported dtype \(dtype) (expected F32, F16 or BF16)"
        case let .dtypeMismatch(file, tensor, found, expected):
            return "\(file): tensor '\(tensor)' is \(found) but the config says \(expected)"
        case let .shapeMismatch(file, tensor, found, expected):
            return "\(file): tensor '\(tensor)' has shape \(found) but the config implies \(expected)"
        case let .missingTensor(tensor, searched):
            return "missing tensor '\(tensor)' (searched \(searched))"
        case let .missingConfigField(file, field):
            return "\(file): missing field '\(field)'"
        case let .invalidConfigField(file, field, detail):
            return "\(file): field '\(field)': \(detail)"
        case let .noWeights(directory):
            return "\(directory): no model.safetensors, model.safetensors.index.json or .gguf file found"
        case let .badIndex(file, detail):
            return "\(file): \(detail)"
        }
    }
}
