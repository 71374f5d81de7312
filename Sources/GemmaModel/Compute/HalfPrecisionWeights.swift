import CGemmaKernels
import COpenBLAS
import Dispatch
import Foundation
import GemmaQuant

/// bf16 or f16 weights used where they lie (usually a memory-mapped checkpoint), at half the
/// memory of f32. A single activation row is dotted with the weights converted on the fly;
/// a batch converts tiles of weight rows to f32 and multiplies them with OpenBLAS.
public struct HalfPrecisionWeights: LinearWeights, @unchecked Sendable {
    public let outputs: Int
    public let inputs: Int
    public let type: GGMLType
    let bytes: UnsafeRawPointer
    let owner: AnyObject

    public init(type: GGMLType, outputs: Int, inputs: Int, bytes: UnsafeRawPointer, owner: AnyObject) {
        precondition(type == .bf16 || type == .f16, "HalfPrecisionWeights holds BF16 or F16")
        self.type = type
        self.outputs = outputs
        self.inputs = inputs
        self.bytes = bytes
        self.owner = owner
    }

    public var byteCount: Int { outputs * inputs * 2 }

    /// Activation rows from which a batch goes through f32 tiles and sgemm.
    static let gemmRows = 4

    public func multiply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        let halfType = Int32(type.rawValue)
        let (weights, n, outputs) = (bytes, inputs, self.outputs)
        if rows < Self.gemmRows {
            let threads = outputs * inputs >= 1 << 16 ? QuantizedWeights.threadCount : 1
            let chunk = (outputs + threads - 1) / threads
            DispatchQueue.concurrentPerform(iterations: threads) { thread in
                let begin = thread * chunk, end = min(outputs, begin + chunk)
                guard begin < end else { return }
                gemma_matmul_half(halfType, weights, Int64(n), Int64(begin), Int64(end), x, Int64(rows), y, Int64(outputs))
            }
            return
        }
        // Tiles of about 4 MB of f32 weights.
        let tileRows = max(16, min(outputs, (1 << 20) / max(1, n)))
        let tile = UnsafeMutablePointer<Float>.allocate(capacity: tileRows * n)
        defer { tile.deallocate() }
        var first = 0
        while first < outputs {
            let count = min(tileRows, outputs - first)
            gemma_convert_rows(halfType, weights + first * n * 2, Int64(count), Int64(n), tile)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(count), Int32(n),
                        1, x, Int32(n), tile, Int32(n), 0, y + first, Int32(outputs))
            first += count
        }
    }

    public func copyRow(_ index: Int, into out: UnsafeMutablePointer<Float>) {
        gemma_convert_rows(Int32(type.rawValue), bytes + index * inputs * 2, 1, Int64(inputs), out)
    }
}
