/// ggml's tensor element types (ids from ggml/include/ggml.h), the subset GGUF files of
/// Gemma models use.
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q8_0 = 8
    case q4_K = 12
    case q6_K = 14
    case bf16 = 30

    /// Elements per block (1 for plain floats).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q4_0, .q8_0: return 32
        case .q4_K, .q6_K: return 256
        }
    }

    /// Bytes per block.
    public var bytesPerBlock: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q4_0: return 18
        case .q8_0: return 34
        case .q4_K: return 144
        case .q6_K: return 210
        }
    }

    /// Bytes of a row of `count` elements (`count` a multiple of the block size).
    public func rowBytes(_ count: Int) -> Int { count / blockSize * bytesPerBlock }
}

extension GGMLType: CustomStringConvertible {
    /// The type's name as ggml and gguf-py spell it in upper case ("F32", "Q8_0", "Q4_K", …).
    public var name: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .q4_0: return "Q4_0"
        case .q8_0: return "Q8_0"
        case .q4_K: return "Q4_K"
        case .q6_K: return "Q6_K"
        }
    }

    public var description: String { name }

    /// Bytes of a tensor of `count` elements.
    /// - Throws: `QuantizationError.rowLengthNotMultipleOfBlockSize` unless `count` is a multiple of the block size.
    public func byteCount(elements count: Int) throws(QuantizationError) -> Int {
        guard count >= 0, count % blockSize == 0 else {
            throw .rowLengthNotMultipleOfBlockSize(format: name, length: count, blockSize: blockSize)
        }
        let (bytes, overflow) = (count / blockSize).multipliedReportingOverflow(by: bytesPerBlock)
        guard !overflow else {
            throw .outputSizeMismatch(format: name, expected: Int.max, actual: count)
        }
        return bytes
    }

    /// Whether `encode` / `decode` support the type (F32, F16, BF16, Q8_0, Q4_0).
    public var isConvertible: Bool {
        switch self {
        case .f32, .f16, .bf16, .q8_0, .q4_0: return true
        case .q4_K, .q6_K: return false
        }
    }

    /// Encodes `values` in this type (F32: little-endian copy; F16 / BF16: `HalfPrecision`;
    /// Q8_0 / Q4_0: the reference quantizers) into `output`, which must hold exactly
    /// `byteCount(elements: values.count)` bytes.
    public func encode(_ values: Span<Float>, into output: inout MutableRawSpan) throws(QuantizationError) {
        switch self {
        case .f32:
            try HalfPrecision.checkOutput(format: name, expected: values.count * 4, actual: output.byteCount)
            for i in values.indices {
                output.storeBytes(of: values[i].bitPattern.littleEndian, toByteOffset: i &* 4, as: UInt32.self)
            }
        case .f16: try HalfPrecision.encodeF16(values, into: &output)
        case .bf16: try HalfPrecision.encodeBF16(values, into: &output)
        case .q8_0: try Q8_0.quantize(values, into: &output)
        case .q4_0: try Q4_0.quantize(values, into: &output)
        case .q4_K, .q6_K: throw .unsupportedType(self)
        }
    }

    /// Decodes `input` (whole blocks of this type) into `output`, which must hold exactly the
    /// number of elements `input` encodes.
    public func decode(_ input: RawSpan, into output: inout MutableSpan<Float>) throws(QuantizationError) {
        switch self {
        case .f32:
            guard input.byteCount % 4 == 0 else {
                throw .inputSizeNotMultipleOfBlock(format: name, byteCount: input.byteCount, bytesPerBlock: 4)
            }
            try HalfPrecision.checkOutput(format: name, expected: input.byteCount / 4, actual: output.count)
            for i in 0 ..< input.byteCount / 4 {
                output[i] = Float(bitPattern: UInt32(littleEndian: input.unsafeLoadUnaligned(fromByteOffset: i &* 4, as: UInt32.self)))
            }
        case .f16: try HalfPrecision.decodeF16(input, into: &output)
        case .bf16: try HalfPrecision.decodeBF16(input, into: &output)
        case .q8_0: try Q8_0.dequantize(input, into: &output)
        case .q4_0: try Q4_0.dequantize(input, into: &output)
        case .q4_K, .q6_K: throw .unsupportedType(self)
        }
    }

    /// `values` encoded in this type.
    public func encode(_ values: [Float]) throws(QuantizationError) -> [UInt8] {
        guard isConvertible else { throw .unsupportedType(self) }
        var out = [UInt8](repeating: 0, count: try byteCount(elements: values.count))
        var span = out.mutableSpan
        var bytes = span.mutableBytes
        try encode(values.span, into: &bytes)
        return out
    }

    /// The values stored in `bytes` (whole blocks of this type).
    public func decode(_ bytes: RawSpan) throws(QuantizationError) -> [Float] {
        guard isConvertible else { throw .unsupportedType(self) }
        guard bytes.byteCount % bytesPerBlock == 0 else {
            throw .inputSizeNotMultipleOfBlock(format: name, byteCount: bytes.byteCount, bytesPerBlock: bytesPerBlock)
        }
        var out = [Float](repeating: 0, count: bytes.byteCount / bytesPerBlock * blockSize)
        var span = out.mutableSpan
        try decode(bytes, into: &span)
        return out
    }

    /// The values stored in `bytes` (whole blocks of this type).
    public func decode(_ bytes: [UInt8]) throws(QuantizationError) -> [Float] {
        try decode(bytes.span.bytes)
    }
}
