import CGemmaKernels
import Foundation
import GemmaQuant

/// Q8_0 or Q4_0 weights computed on directly, never dequantized as a whole: each batch of
/// activation rows is quantized to Q8_0 per 32-element block (as llama.cpp does) and multiplied
/// with the weight blocks by integer kernels (`gemma_matmul_quantized_f32`), the weights read
/// once per call for every row and the output rows split across the cores. Where the AVX2
/// kernels run, the rows are packed once at load (eight rows interleaved per block, the same
/// size); embedding lookups still read the rows where they lie.
public struct QuantizedWeights: LinearWeights, @unchecked Sendable {
    public let outputs: Int
    public let inputs: Int
    public let type: GGMLType
    /// Rows of `type` blocks; points into `owner`'s memory.
    let bytes: UnsafeRawPointer
    /// Keeps the memory `bytes` points into alive (a mapped file, or an array).
    let owner: AnyObject
    /// The packed copy of the whole groups of 8 rows, when the AVX2 kernels are in use.
    let packed: PackedBuffer?

    /// `releaseSource`: `bytes` is a read-only mapping of a file, whose pages may be dropped
    /// from memory once packed (they are read back from the file if a row is looked up).
    /// `pack: false` keeps the rows only where they lie (a table only looked up by row).
    public init(type: GGMLType, outputs: Int, inputs: Int, bytes: UnsafeRawPointer, owner: AnyObject,
                releaseSource: Bool = false, pack: Bool = true) {
        precondition(type == .q8_0 || type == .q4_0, "QuantizedWeights holds Q8_0 or Q4_0")
        precondition(inputs % 32 == 0)
        self.type = type
        self.outputs = outputs
        self.inputs = inputs
        self.bytes = bytes
        self.owner = owner
        let packedBytes = Int(gemma_packed_bytes(Int32(type.rawValue), Int64(outputs), Int64(inputs)))
        if pack, gemma_kernels_use_avx2() != 0, packedBytes > 0 {
            let buffer = PackedBuffer(byteCount: packedBytes)
            gemma_pack_quantized(Int32(type.rawValue), bytes, Int64(outputs), Int64(inputs), buffer.pointer)
            packed = buffer
            if releaseSource { releasePages(bytes, count: outputs / 8 * 8 * type.rowBytes(inputs)) }
        } else {
            packed = nil
        }
    }

    public var byteCount: Int { outputs * type.rowBytes(inputs) }

    /// Threads of every compute kernel (quantized, half and f32 products, attention): the
    /// kernels' pool in CGemmaKernels.
    public static var threadCount: Int {
        get { Int(gemma_threads()) }
        set { gemma_set_threads(Int32(newValue)) }
    }

    public func multiply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        gemma_matmul_quantized_f32(Int32(type.rawValue), bytes, packed?.pointer, Int64(outputs), Int64(inputs),
                                   x, Int64(rows), y, Int64(outputs))
    }

    public func copyRow(_ index: Int, into out: UnsafeMutablePointer<Float>) {
        let rowBytes = type.rowBytes(inputs)
        let row = bytes + index * rowBytes
        let blockBytes = type.bytesPerBlock
        for b in 0..<inputs / 32 {
            let block = row + b * blockBytes
            let d = gemma_fp16_to_fp32(block.loadUnaligned(as: UInt16.self))
            let target = out + b * 32
            if type == .q8_0 {
                for j in 0..<32 { target[j] = d * Float(block.load(fromByteOffset: 2 + j, as: Int8.self)) }
            } else {
                for j in 0..<16 {
                    let byte = block.load(fromByteOffset: 2 + j, as: UInt8.self)
                    target[j] = d * Float(Int(byte & 0x0F) - 8)
                    target[j + 16] = d * Float(Int(byte >> 4) - 8)
                }
            }
        }
    }
}

/// Page-aligned memory for packed weights (huge pages where the kernel allows, fewer TLB misses
/// when the weights stream through).
final class PackedBuffer: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let byteCount: Int

    init(byteCount: Int) {
        self.byteCount = byteCount
        let alignment = 2 << 20
        pointer = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: alignment)
        _ = madvise(pointer, (byteCount + 4095) / 4096 * 4096, MADV_HUGEPAGE)
    }

    deinit { pointer.deallocate() }
}

/// Drops the whole pages of a read-only file mapping inside [start, start + count) from memory.
private func releasePages(_ start: UnsafeRawPointer, count: Int) {
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let first = (Int(bitPattern: start) + page - 1) / page * page
    let end = (Int(bitPattern: start) + count) / page * page
    guard end > first else { return }
    madvise(UnsafeMutableRawPointer(bitPattern: first), end - first, MADV_DONTNEED)
}
