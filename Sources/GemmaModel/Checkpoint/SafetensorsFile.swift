import Foundation

/// Where one tensor lives inside a safetensors file.
public struct SafetensorsTensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: TensorDType
    public let shape: [Int]
    /// Absolute byte range in the file.
    public let byteRange: Range<Int>

    public var elementCount: Int { shape.reduce(1, *) }
}

/// A memory-mapped `.safetensors` file: an 8-byte little-endian header length, a JSON header
/// mapping tensor names to dtype, shape and data offsets, then the data. The header is checked
/// completely when the file is opened; tensor data is read only when asked for.
public final class SafetensorsFile: @unchecked Sendable {
    /// Largest JSON header accepted (the format's own limit is 100 MB).
    static let maxHeaderBytes = 100_000_000

    public let path: String
    public let tensors: [String: SafetensorsTensorInfo]
    private let file: MappedFile

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        guard file.count >= 8 else {
            throw CheckpointError.truncated(file: path, detail: "\(file.count) bytes, less than the 8-byte header length")
        }
        let headerLength = file.readUInt64(at: 0)
        guard headerLength <= UInt64(Self.maxHeaderBytes) else {
            throw CheckpointError.badHeader(file: path, detail: "header length \(headerLength) is larger than \(Self.maxHeaderBytes)")
        }
        let headerEnd = 8 + Int(headerLength)
        guard headerEnd <= file.count else {
            throw CheckpointError.truncated(file: path, detail: "header says \(headerLength) bytes but the file has \(file.count - 8) after the length")
        }
        let headerBytes = Data(file.bytes(8..<headerEnd))
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: headerBytes)
        } catch {
            throw CheckpointError.badHeader(file: path, detail: "header is not valid JSON")
        }
        guard let entries = json as? [String: Any] else {
            throw CheckpointError.badHeader(file: path, detail: "header is not a JSON object")
        }
        let dataSize = file.count - headerEnd
        var parsed: [String: SafetensorsTensorInfo] = [:]
        for (name, value) in entries where name != "__metadata__" {
            parsed[name] = try Self.parseEntry(name: name, value: value, path: path,
                                               dataStart: headerEnd, dataSize: dataSize)
        }
        // Tensors may not share bytes.
        let ordered = parsed.values.sorted { ($0.byteRange.lowerBound, $0.name) < ($1.byteRange.lowerBound, $1.name) }
        for (previous, next) in zip(ordered, ordered.dropFirst())
        where next.byteRange.lowerBound < previous.byteRange.upperBound && !next.byteRange.isEmpty && !previous.byteRange.isEmpty {
            throw CheckpointError.overlappingTensors(file: path, tensor: next.name, other: previous.name)
        }
        tensors = parsed
    }

    private static func parseEntry(name: String, value: Any, path: String,
                                   dataStart: Int, dataSize: Int) throws -> SafetensorsTensorInfo {
        guard let entry = value as? [String: Any] else {
            throw CheckpointError.badHeader(file: path, detail: "entry for tensor '\(name)' is not an object")
        }
        guard let dtypeName = entry["dtype"] as? String else {
            throw CheckpointError.badHeader(file: path, detail: "tensor '\(name)' has no dtype")
        }
        guard let dtype = TensorDType(rawValue: dtypeName) else {
            throw CheckpointError.unsupportedDType(file: path, tensor: name, dtype: dtypeName)
        }
        guard let shapeValues = entry["shape"] as? [Any],
              let shape = Self.nonNegativeInts(shapeValues) else {
            throw CheckpointError.badHeader(file: path, detail: "tensor '\(name)' has no valid shape")
        }
        guard let offsetValues = entry["data_offsets"] as? [Any], offsetValues.count == 2,
              let offsets = Self.nonNegativeInts(offsetValues) else {
            throw CheckpointError.badHeader(file: path, detail: "tensor '\(name)' has no valid data_offsets")
        }
        let (begin, end) = (offsets[0], offsets[1])
        guard begin <= end else {
            throw CheckpointError.offsetsOutOfRange(file: path, tensor: name, detail: "[\(begin), \(end)) ends before it begins")
        }
        guard end <= dataSize else {
            throw CheckpointError.offsetsOutOfRange(file: path, tensor: name,
                                                    detail: "[\(begin), \(end)) but the data section has \(dataSize) bytes")
        }
        var elements = 1
        for dim in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: dim)
            guard !overflow else {
                throw CheckpointError.badHeader(file: path, detail: "tensor '\(name)' shape \(shape) is too large")
            }
            elements = product
        }
        let (needed, overflow) = elements.multipliedReportingOverflow(by: dtype.size)
        guard !overflow else {
            throw CheckpointError.badHeader(file: path, detail: "tensor '\(name)' shape \(shape) of \(dtype.rawValue) is too large")
        }
        guard end - begin == needed else {
            throw CheckpointError.offsetsOutOfRange(
                file: path, tensor: name,
                detail: "[\(begin), \(end)) holds \(end - begin) bytes but shape \(shape) of \(dtype.rawValue) needs \(needed)")
        }
        return SafetensorsTensorInfo(name: name, dtype: dtype, shape: shape,
                                     byteRange: (dataStart + begin)..<(dataStart + end))
    }

    private static func nonNegativeInts(_ values: [Any]) -> [Int]? {
        var result: [Int] = []
        for value in values {
            guard let int = value as? Int, int >= 0 else { return nil }
            result.append(int)
        }
        return result
    }

    /// The raw bytes of a tensor, straight from the map.
    public func rawBytes(of info: SafetensorsTensorInfo) -> UnsafeRawBufferPointer {
        file.bytes(info.byteRange)
    }
}
