import CGemmaKernels
import Foundation
import GemmaQuant

/// Q8_0 or Q4_0 weights computed on directly, never dequantized as a whole: each batch of
/// activation rows is quantized to Q8_0 per 32-element block (as llama.cpp does) and multiplied
/// with the weight blocks by integer kernels (`gemma_matmul_quantized_f32`), the weights read
/// once per call for every row and the output rows split across the cores.
public struct QuantizedWeights: LinearWeights, @unchecked Sendable {
    public let outputs: Int
    public let inputs: Int
    public let type: GGMLType
    /// Rows of `type` blocks; points into `owner`'s memory.
    let bytes: UnsafeRawPointer
    /// Keeps the memory `bytes` points into alive (a mapped file, or an array).
    let owner: AnyObject

    public init(type: GGMLType, outputs: Int, inputs: Int, bytes: UnsafeRawPointer, owner: AnyObject) {
        precondition(type == .q8_0 || type == .q4_0, "QuantizedWeights holds Q8_0 or Q4_0")
        precondition(inputs % 32 == 0)
        self.type = type
        self.outputs = outputs
        self.inputs = inputs
        self.bytes = bytes
        self.owner = owner
    }

    public var byteCount: Int { outputs * type.rowBytes(inputs) }

    /// Threads of every compute kernel (quantized, half and f32 products, attention): the
    /// kernels' pool in CGemmaKernels.
    public static var threadCount: Int {
        get { Int(gemma_threads()) }
        set { gemma_set_threads(Int32(newValue)) }
    }

    public func multiply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        gemma_matmul_quantized_f32(Int32(type.rawValue), bytes, Int64(outputs), Int64(inputs), x, Int64(rows), y, Int64(outputs))
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
