/// Why a GGUF file could not be read, or a metadata value or tensor looked up in it.
///
/// `path` is the file (or the name given to in-memory bytes); `problem` says what is wrong and
/// where, and `description` puts both into a sentence.
public struct GGUFError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file the error is about.
    public let path: String
    /// What went wrong.
    public let problem: Problem

    public init(path: String, problem: Problem) {
        self.path = path
        self.problem = problem
    }

    /// What is wrong with the file or the request.
    public enum Problem: Sendable, Equatable {
        /// The file could not be opened, inspected or mapped; `reason` is the system's message.
        case cannotOpen(reason: String)
        /// The path is a directory or some other non-regular file.
        case notARegularFile
        /// The file ends at byte `offset` in the middle of `reading` (what was being read).
        case truncated(offset: Int, reading: String)
        /// The first four bytes are not "GGUF".
        case badMagic(found: [UInt8])
        /// The version is not 2 or 3 (a version whose low 16 bits are zero suggests a big-endian file).
        case unsupportedVersion(UInt32)
        /// A tensor or key/value count that the rest of the file could not possibly hold.
        case absurdCount(what: String, count: UInt64, offset: Int)
        /// A string length at `offset` larger than the rest of the file.
        case stringTooLong(length: UInt64, offset: Int, reading: String)
        /// An array item count at `offset` larger than the rest of the file could hold.
        case arrayTooLong(count: UInt64, offset: Int, key: String)
        /// Arrays of arrays nested deeper than `GGUFFile.maximumArrayNesting`.
        case arraysNestedTooDeep(key: String, offset: Int)
        /// A string that is not valid UTF-8.
        case invalidUTF8(offset: Int, reading: String)
        /// A value type tag that GGUF does not define.
        case unknownValueType(UInt32, key: String, offset: Int)
        /// The same metadata key twice.
        case duplicateKey(String)
        /// `general.alignment` is not a positive power of two held in an integer type.
        case invalidAlignment(String)
        /// A tensor with more than 4 dimensions.
        case tooManyDimensions(tensor: String, count: UInt32)
        /// A tensor dimension that does not fit in an Int64, or a product of dimensions that overflows.
        case invalidDimensions(tensor: String, dimensions: [UInt64])
        /// A tensor whose ggml type id this library does not know (or that GGUF does not define).
        case unknownTensorType(tensor: String, typeID: UInt32)
        /// A block-quantized tensor whose rows are not a whole number of blocks.
        case rowNotMultipleOfBlock(tensor: String, rowLength: Int, type: GGMLType)
        /// A tensor whose data offset is not a multiple of the file's alignment.
        case misalignedTensorOffset(tensor: String, offset: UInt64, alignment: Int)
        /// A tensor whose data (`byteCount` bytes at `offset` in the data section starting at
        /// `dataStart`) runs past the end of the file (`fileSize` bytes).
        case tensorDataOutOfRange(tensor: String, offset: UInt64, byteCount: Int, dataStart: Int, fileSize: Int)
        /// The same tensor name twice.
        case duplicateTensorName(String)
        /// No metadata key of that name.
        case missingKey(String)
        /// The key's value has type `found` where `expected` was asked for.
        case wrongType(key: String, expected: String, found: String)
        /// The key's value does not fit the type asked for (an u64 beyond Int.max, say).
        case valueOutOfRange(key: String, value: String)
        /// No tensor of that name.
        case missingTensor(String)
        /// A `GGUFTensorInfo` that did not come from this file.
        case foreignTensorInfo(String)
        /// The tensor's type cannot be decoded to floats by this library.
        case cannotDecode(tensor: String, reason: String)
    }

    public var description: String {
        "\(path): \(problemDescription)"
    }

    private var problemDescription: String {
        switch problem {
        case let .cannotOpen(reason):
            return "cannot open the file: \(reason)"
        case .notARegularFile:
            return "not a regular file"
        case let .truncated(offset, reading):
            return "file truncated at offset \(offset) while reading \(reading); the file is incomplete or not a GGUF file"
        case let .badMagic(found):
            let text = found.map { $0 >= 0x20 && $0 < 0x7F ? String(UnicodeScalar($0)) : "?" }.joined()
            let hex = found.map { String($0, radix: 16) }.joined(separator: " ")
            return "bad magic '\(text)' (\(hex)); a GGUF file starts with 'GGUF'"
        case let .unsupportedVersion(v):
            if v & 0xFFFF == 0 {
                return "unsupported GGUF version \(v) (0x\(String(v, radix: 16))); this looks like a big-endian file, only little-endian GGUF v2 and v3 are supported"
            }
            return "unsupported GGUF version \(v); only versions 2 and 3 are supported"
        case let .absurdCount(what, count, offset):
            return "\(what) \(count) at offset \(offset) is more than the rest of the file can hold; the file is truncated or corrupt"
        case let .stringTooLong(length, offset, reading):
            return "string length \(length) at offset \(offset) while reading \(reading) runs past the end of the file; the file is truncated or corrupt"
        case let .arrayTooLong(count, offset, key):
            return "array of \(count) items at offset \(offset) for key '\(key)' cannot fit in the rest of the file; the file is truncated or corrupt"
        case let .arraysNestedTooDeep(key, offset):
            return "arrays nested more than \(GGUFFile.maximumArrayNesting) deep at offset \(offset) for key '\(key)'"
        case let .invalidUTF8(offset, reading):
            return "string at offset \(offset) while reading \(reading) is not valid UTF-8"
        case let .unknownValueType(type, key, offset):
            return "unknown GGUF value type \(type) at offset \(offset) for key '\(key)' (known types are 0...12)"
        case let .duplicateKey(key):
            return "metadata key '\(key)' appears more than once"
        case let .invalidAlignment(value):
            return "general.alignment is \(value); it must be a positive power of two stored as an integer"
        case let .tooManyDimensions(tensor, count):
            return "tensor '\(tensor)' has \(count) dimensions; GGUF allows at most 4"
        case let .invalidDimensions(tensor, dims):
            return "tensor '\(tensor)' has invalid dimensions \(dims) (too large, or their product overflows)"
        case let .unknownTensorType(tensor, typeID):
            return "unknown ggml type \(typeID) for tensor '\(tensor)'; supported types are "
                + GGMLType.allCases.map { "\($0.name) (\($0.rawValue))" }.joined(separator: ", ")
        case let .rowNotMultipleOfBlock(tensor, rowLength, type):
            return "tensor '\(tensor)' has rows of \(rowLength) elements, not a multiple of the \(type.name) block size \(type.blockSize)"
        case let .misalignedTensorOffset(tensor, offset, alignment):
            return "tensor '\(tensor)' data offset \(offset) is not a multiple of the alignment \(alignment)"
        case let .tensorDataOutOfRange(tensor, offset, byteCount, dataStart, fileSize):
            return "tensor '\(tensor)' data (\(byteCount) bytes at offset \(offset) after the data section start \(dataStart)) "
                + "runs past the end of the file (\(fileSize) bytes); the file is truncated or corrupt"
        case let .duplicateTensorName(name):
            return "tensor name '\(name)' appears more than once"
        case let .missingKey(key):
            return "metadata key '\(key)' is missing"
        case let .wrongType(key, expected, found):
            return "metadata key '\(key)' has type \(found), expected \(expected)"
        case let .valueOutOfRange(key, value):
            return "metadata key '\(key)' has value \(value), which does not fit the requested type"
        case let .missingTensor(name):
            return "no tensor named '\(name)'"
        case let .foreignTensorInfo(name):
            return "the tensor info for '\(name)' does not describe a tensor of this file"
        case let .cannotDecode(tensor, reason):
            return "cannot decode tensor '\(tensor)': \(reason)"
        }
    }
}
