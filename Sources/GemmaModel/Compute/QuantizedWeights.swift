import CGemmaKernels
import Foundation
import Dispatch
import GemmaQuant

/// Q8_0 or Q4_0 weights computed on directly, never dequantized as a whole: each batch of
/// activation rows is quantized to Q8_0 per 32-element block (as llama.cpp does) and dotted
/// with the weight blocks by integer kernels, the output rows split across the cores.
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

    /// Threads the output rows of quantized and half-precision products are split across.
    nonisolated(unsafe) public static var threadCount = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 8))

    public func multiply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        let activationRowBytes = GGMLType.q8_0.rowBytes(inputs)
        let quantized = UnsafeMutableRawPointer.allocate(byteCount: rows * activationRowBytes, alignment: 64)
        defer { quantized.deallocate() }
        for t in 0..<rows {
            gemma_quantize_row_q8_0(x + t * inputs, quantized + t * activationRowBytes, Int64(inputs))
        }
        let typeID = Int32(type.rawValue)
        let threads = outputs * rows * inputs >= 1 << 16 ? Self.threadCount : 1
        let chunk = (outputs + threads - 1) / threads
        let (weights, n, outputs) = (bytes, Int64(inputs), self.outputs)
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            let begin = thread * chunk
            let end = min(outputs, begin + chunk)
            guard begin < end else { return }
            gemma_matmul_quantized(typeID, weights, n, Int64(begin), Int64(end),
                                   quantized, Int64(rows), y, Int64(outputs))
        }
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
