/// Why a row could not be quantized, dequantized or converted.
///
/// Each case names the format and the lengths involved, so the message says what to fix.
public enum QuantizationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A row of `length` elements cannot be cut into blocks of `blockSize` (32 for Q8_0 and Q4_0).
    case rowLengthNotMultipleOfBlockSize(format: String, length: Int, blockSize: Int)
    /// Encoded input of `byteCount` bytes is not a whole number of `bytesPerBlock`-byte blocks.
    case inputSizeNotMultipleOfBlock(format: String, byteCount: Int, bytesPerBlock: Int)
    /// The output buffer has `actual` elements (bytes when encoding, floats when decoding) but the
    /// input needs exactly `expected`.
    case outputSizeMismatch(format: String, expected: Int, actual: Int)
    /// This library has no encoder / decoder for the type (the K-quants).
    case unsupportedType(GGMLType)

    public var description: String {
        switch self {
        case let .rowLengthNotMultipleOfBlockSize(format, length, blockSize):
            return "\(format): a row of \(length) values is not a multiple of the block size \(blockSize); "
                + "only rows whose length is a multiple of \(blockSize) can be stored as \(format)"
        case let .inputSizeNotMultipleOfBlock(format, byteCount, bytesPerBlock):
            return "\(format): \(byteCount) bytes of encoded data are not a whole number of \(bytesPerBlock)-byte blocks"
        case let .outputSizeMismatch(format, expected, actual):
            return "\(format): the output buffer holds \(actual) elements but the input needs exactly \(expected)"
        case let .unsupportedType(type):
            return "\(type.name) is not supported for conversion (only F32, F16, BF16, Q8_0 and Q4_0 are)"
        }
    }
}
