import CGemmaKernels
import GemmaModel
import GemmaQuant
import XCTest

/// The activation quantizer and the quantized and half-precision weights (portable C and AVX2)
/// against plain Swift computations over the same blocks, at awkward lengths.
final class QuantizedKernelTests: XCTestCase {
    static let lengths = [32, 64, 96, 160, 1024, 2048 + 32]

    /// Deterministic pseudo-random values in roughly [-scale, scale].
    func values(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
        }
    }

    /// Q8_0 blocks of `x` (the kernels' own activation quantizer).
    func q8(_ x: [Float]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: x.count / 32 * 34)
        x.withUnsafeBufferPointer { xp in out.withUnsafeMutableBytes { gemma_quantize_row_q8_0(xp.baseAddress!, $0.baseAddress!, Int64(x.count)) } }
        return out
    }

    /// Q4_0 blocks of `x`, by ggml's reference rule, written here independently of GemmaQuant.
    func q4(_ x: [Float]) -> [UInt8] {
        var out: [UInt8] = []
        for b in 0..<x.count / 32 {
            let block = x[b * 32..<(b + 1) * 32]
            var max: Float = 0, amax: Float = 0
            for v in block where abs(v) > amax { amax = abs(v); max = v }
            let d = max / -8
            let id = d != 0 ? 1 / d : 0
            withUnsafeBytes(of: Float16(d).bitPattern.littleEndian) { out.append(contentsOf: $0) }
            for j in 0..<16 {
                let lo = UInt8(min(15, Int8(block[block.startIndex + j] * id + 8.5)))
                let hi = UInt8(min(15, Int8(block[block.startIndex + j + 16] * id + 8.5)))
                out.append(lo | hi << 4)
            }
        }
        return out
    }

    /// The dot product computed in Swift from the blocks' integer values and scales.
    func referenceDot(type: GGMLType, _ w: [UInt8], _ x: [UInt8], n: Int) -> Float {
        var sum: Float = 0
        for b in 0..<n / 32 {
            let xd = Float(Float16(bitPattern: UInt16(x[b * 34]) | UInt16(x[b * 34 + 1]) << 8))
            var s = 0
            if type == .q8_0 {
                let wd = Float(Float16(bitPattern: UInt16(w[b * 34]) | UInt16(w[b * 34 + 1]) << 8))
                for j in 0..<32 { s += Int(Int8(bitPattern: w[b * 34 + 2 + j])) * Int(Int8(bitPattern: x[b * 34 + 2 + j])) }
                sum += Float(s) * wd * xd
            } else {
                let wd = Float(Float16(bitPattern: UInt16(w[b * 18]) | UInt16(w[b * 18 + 1]) << 8))
                for j in 0..<16 {
                    let byte = w[b * 18 + 2 + j]
                    s += (Int(byte & 0x0F) - 8) * Int(Int8(bitPattern: x[b * 34 + 2 + j]))
                    s += (Int(byte >> 4) - 8) * Int(Int8(bitPattern: x[b * 34 + 2 + j + 16]))
                }
                sum += Float(s) * wd * xd
            }
        }
        return sum
    }

    func testActivationQuantizerAgreesOnBothPaths() {
        defer { gemma_kernels_set_avx2(1) }
        for n in Self.lengths {
            let x = values(n, seed: UInt64(n) * 7, scale: 10) + [Float](repeating: 0, count: 32)
            gemma_kernels_set_avx2(0)
            let portable = q8(x)
            gemma_kernels_set_avx2(1)
            let fast = q8(x)
            // Scales are identical; values may differ by one where x * id lands exactly on .5
            // (the AVX2 path rounds half to even, the portable one away from zero).
            XCTAssertEqual(portable.count, fast.count)
            for (i, (a, b)) in zip(portable, fast).enumerated() {
                if i % 34 < 2 { XCTAssertEqual(a, b, "scale byte \(i)") } else {
                    XCTAssertLessThanOrEqual(abs(Int(Int8(bitPattern: a)) - Int(Int8(bitPattern: b))), 1)
                }
            }
        }
    }

    func testQuantizedWeightsMultiplyLikeTheirDequantizedValues() {
        // y = x W^T through QuantizedWeights (threads, batch rows) against f32 over dequantized W.
        let outputs = 70, inputs = 256, rows = 5
        let w = values(outputs * inputs, seed: 5, scale: 0.2)
        let x = values(rows * inputs, seed: 6, scale: 2)
        for type in [GGMLType.q8_0, .q4_0] {
            var blocks: [UInt8] = []
            for r in 0..<outputs {
                let row = Array(w[r * inputs..<(r + 1) * inputs])
                blocks += type == .q8_0 ? q8(row) : q4(row)
            }
            let rowBytes = type.rowBytes(inputs)
            let storage = WeightBox(blocks)
            let weights = QuantizedWeights(type: type, outputs: outputs, inputs: inputs,
                                           bytes: storage.pointer, owner: storage)
            var dequantized = [Float](repeating: 0, count: outputs * inputs)
            dequantized.withUnsafeMutableBufferPointer { buffer in
                for r in 0..<outputs { weights.copyRow(r, into: buffer.baseAddress! + r * inputs) }
            }
            let y = weights(Matrix(rows: rows, columns: inputs, storage: x))
            for t in 0..<rows {
                let xq = q8(Array(x[t * inputs..<(t + 1) * inputs]))
                for r in 0..<outputs {
                    let weightRow = Array(blocks[r * rowBytes..<(r + 1) * rowBytes])
                    let expected = referenceDot(type: type, weightRow, xq, n: inputs)
                    XCTAssertEqual(y.storage[t * outputs + r], expected, accuracy: 1e-3, "\(type) row \(t) out \(r)")
                }
            }
        }
    }
}

/// Owns bytes for QuantizedWeights in tests.
final class WeightBox {
    let pointer: UnsafeMutableRawPointer
    init(_ bytes: [UInt8]) {
        pointer = .allocate(byteCount: bytes.count, alignment: 64)
        bytes.withUnsafeBytes { pointer.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    }
    deinit { pointer.deallocate() }
}

/// bf16 and f16 weights (decode path, batch path, both instruction sets) against f32 sgemm
/// over the same values.
final class HalfPrecisionKernelTests: XCTestCase {
    func testHalfPrecisionWeightsMultiplyLikeFloat32() {
        defer { gemma_kernels_set_avx2(1) }
        let outputs = 37, inputs = 77
        var state: UInt64 = 11
        let w = (0..<outputs * inputs).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state) >> 40) / Float(1 << 23)
        }
        for type in [GGMLType.bf16, .f16] {
            var bits: [UInt16] = w.map { type == .f16 ? Float16($0).bitPattern : UInt16($0.bitPattern >> 16) }
            let rounded = bits.map { type == .f16 ? Float(Float16(bitPattern: $0)) : Float(bitPattern: UInt32($0) << 16) }
            let storage = WeightBox(bits.withUnsafeBytes { Array($0) })
            bits.removeAll()
            let half = HalfPrecisionWeights(type: type, outputs: outputs, inputs: inputs, bytes: storage.pointer, owner: storage)
            let exact = Float32Weights(outputs: outputs, inputs: inputs, values: rounded)
            for avx2 in [0, 1] {
                gemma_kernels_set_avx2(Int32(avx2))
                for rows in [1, 3, 5, 17] {
                    let x = Matrix(rows: rows, columns: inputs, storage: (0..<rows * inputs).map { Float($0 % 13) - 6 })
                    let got = half(x), expected = exact(x)
                    XCTAssertLessThan(zip(got.storage, expected.storage).map { abs($0 - $1) }.max()!, 1e-3,
                                      "\(type) rows \(rows) avx2 \(avx2)")
                }
                var row = [Float](repeating: 0, count: inputs)
                row.withUnsafeMutableBufferPointer { half.copyRow(5, into: $0.baseAddress!) }
                XCTAssertEqual(row, Array(rounded[5 * inputs..<6 * inputs]))
            }
        }
    }
}
