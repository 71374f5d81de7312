import Foundation
import GemmaQuant
import XCTest

/// Degenerate GGUF files on disk (sizes chosen so that any unchecked arithmetic on them would
/// trap or wrap): each is refused with a `GGUFError` that names the file and the tensor or key.
final class GGUFDegenerateFileTests: XCTestCase {
    var scratch: ScratchDirectory!

    override func setUpWithError() throws { scratch = try ScratchDirectory() }
    override func tearDown() { scratch.remove() }

    /// Writes `bytes` to a file and opens it by path, expecting a `GGUFError` that matches and
    /// whose description names the file and `named`.
    func assertRefused(_ name: String, _ bytes: [UInt8], naming named: String, line: UInt = #line,
                       _ matches: (GGUFError.Problem) -> Bool) throws {
        let path = scratch.file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let error = assertGGUFError(try GGUFFile(path: path), line: line, matches)
        XCTAssertEqual(error?.path, path, line: line)
        XCTAssertTrue(error?.description.contains(path) == true, "\(String(describing: error))", line: line)
        XCTAssertTrue(error?.description.contains(named) == true, "\(String(describing: error))", line: line)
    }

    func oneTensor(_ name: String, dimCount: UInt32? = nil, dims: [UInt64], type: UInt32 = 0, offset: UInt64 = 0,
                   dataBytes: Int = 64) -> [UInt8] {
        var b = ByteBuilder()
        b.header(tensors: 1, kvs: 0)
        b.string(name)
        b.u32(dimCount ?? UInt32(dims.count))
        for d in dims { b.u64(d) }
        b.u32(type)
        b.u64(offset)
        b.pad(to: 32)
        b.raw([UInt8](repeating: 0, count: dataBytes))
        return b.bytes
    }

    func testDimensionsWhoseProductOrByteCountPassesIntMax() throws {
        try assertRefused("product.gguf", oneTensor("blk.0.attn_q.weight", dims: [1 << 32, 1 << 32]),
                          naming: "blk.0.attn_q.weight") { $0 == .invalidDimensions(tensor: "blk.0.attn_q.weight", dimensions: [1 << 32, 1 << 32]) }
        // 2^62 elements fit in an Int, 2^62 x 4 bytes do not.
        try assertRefused("bytes.gguf", oneTensor("token_embd.weight", dims: [1 << 31, 1 << 31]),
                          naming: "token_embd.weight") { $0 == .invalidDimensions(tensor: "token_embd.weight", dimensions: [1 << 31, 1 << 31]) }
        // Past Int.max on its own.
        try assertRefused("huge.gguf", oneTensor("w", dims: [1 << 63]), naming: "'w'") {
            $0 == .invalidDimensions(tensor: "w", dimensions: [1 << 63])
        }
        // Q8_0: 2^60 blocks of 34 bytes.
        try assertRefused("q8.gguf", oneTensor("q", dims: [32, 1 << 60], type: 8), naming: "'q'") {
            $0 == .invalidDimensions(tensor: "q", dimensions: [32, 1 << 60])
        }
    }

    func testAbsurdDimensionCount() throws {
        try assertRefused("dims.gguf", oneTensor("many", dimCount: UInt32.max, dims: [4]), naming: "many") {
            $0 == .tooManyDimensions(tensor: "many", count: UInt32.max)
        }
    }

    func testStringLengthOf2To63() throws {
        var key = ByteBuilder()
        key.header(tensors: 0, kvs: 1)
        key.u64(1 << 63)
        key.raw([UInt8](repeating: 0x61, count: 64))
        try assertRefused("key.gguf", key.bytes, naming: "metadata entry 0") {
            $0 == .stringTooLong(length: 1 << 63, offset: 24, reading: "the key of metadata entry 0")
        }
        var value = ByteBuilder()
        value.header(tensors: 0, kvs: 1)
        value.string("general.name")
        value.u32(GGUFValueType.string.rawValue)
        value.u64(UInt64.max)
        value.raw([UInt8](repeating: 0x61, count: 64))
        try assertRefused("value.gguf", value.bytes, naming: "general.name") {
            if case .stringTooLong(length: UInt64.max, _, reading: "the value of key 'general.name'") = $0 { return true }
            return false
        }
        var tensorName = ByteBuilder()
        tensorName.header(tensors: 1, kvs: 0)
        tensorName.u64(1 << 63)
        tensorName.raw([UInt8](repeating: 0x61, count: 64))
        try assertRefused("tensor-name.gguf", tensorName.bytes, naming: "tensor 0") {
            if case .stringTooLong(length: 1 << 63, _, reading: "the name of tensor 0") = $0 { return true }
            return false
        }
    }

    func testHugeArrayCounts() throws {
        // Counts whose size in bytes (count x 8) would wrap, and nested arrays.
        for (type, count) in [(GGUFValueType.uint64, UInt64(1) << 61), (.uint8, .max), (.array, 1 << 62), (.string, 1 << 60)] {
            var b = ByteBuilder()
            b.header(tensors: 0, kvs: 1)
            b.string("test.array")
            b.u32(GGUFValueType.array.rawValue)
            b.u32(type.rawValue)
            b.u64(count)
            b.raw([UInt8](repeating: 0, count: 64))
            try assertRefused("array-\(type).gguf", b.bytes, naming: "test.array") {
                if case .arrayTooLong(count: count, _, key: "test.array") = $0 { return true }
                return false
            }
        }
    }

    func testAlignmentZeroNotAPowerOfTwoOrHuge() throws {
        let cases: [(GGUFValueType, UInt64)] = [(.uint32, 0), (.uint32, 48), (.uint32, 3), (.uint64, 1 << 63), (.uint64, UInt64.max), (.int32, UInt64(UInt32(bitPattern: -32)))]
        for (index, (type, value)) in cases.enumerated() {
            var b = ByteBuilder()
            b.header(tensors: 0, kvs: 1)
            b.string("general.alignment")
            b.u32(type.rawValue)
            if type == .uint64 { b.u64(value) } else { b.u32(UInt32(truncatingIfNeeded: value)) }
            try assertRefused("align-\(index).gguf", b.bytes, naming: "general.alignment") {
                if case .invalidAlignment = $0 { return true }
                return false
            }
        }
    }

    func testTensorOffsetPlusSizePastTheEndOrOverflowing() throws {
        // An aligned offset whose sum with the data start or the size overflows.
        for offset: UInt64 in [UInt64.max & ~31, 1 << 63, UInt64(Int.max) & ~31] {
            try assertRefused("offset-\(offset).gguf", oneTensor("output_norm.weight", dims: [8], offset: offset),
                              naming: "output_norm.weight") {
                if case .tensorDataOutOfRange(tensor: "output_norm.weight", offset: offset, byteCount: 32, _, _) = $0 { return true }
                return false
            }
        }
        // In range, but the size runs past the end.
        try assertRefused("past-end.gguf", oneTensor("t", dims: [32], offset: 32, dataBytes: 64), naming: "'t'") {
            if case .tensorDataOutOfRange(tensor: "t", offset: 32, byteCount: 128, _, _) = $0 { return true }
            return false
        }
        // The largest size whose product fits, far past the file.
        try assertRefused("size.gguf", oneTensor("big", dims: [1 << 30, 1 << 30]), naming: "'big'") {
            if case .tensorDataOutOfRange(tensor: "big", offset: 0, byteCount: 1 << 62, _, _) = $0 { return true }
            return false
        }
    }
}
