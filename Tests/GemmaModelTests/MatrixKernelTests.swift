import CGemmaKernels
import GemmaModel
import GemmaQuant
import XCTest

/// The matrix, attention and activation kernels of CGemmaKernels (every AVX2 path and the
/// portable one, one and two threads) against plain scalar computations, at awkward sizes:
/// row counts that are not multiples of the tiles, block and vector tails, batch sizes 1 ... 9,
/// and lengths long enough to cross the kernels' spans.
final class MatrixKernelTests: XCTestCase {
    override func tearDown() {
        gemma_kernels_set_avx2(1)
        gemma_set_threads(2)
    }

    func values(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
        }
    }

    /// Every configuration the kernels choose between.
    func forEachPath(_ body: (String) -> Void) {
        for avx2 in [0, 1] {
            for threads in [1, 2] {
                gemma_kernels_set_avx2(Int32(avx2))
                gemma_set_threads(Int32(threads))
                body("avx2 \(avx2) threads \(threads)")
            }
        }
    }

    /// Q8_0 blocks of each row of `w` (ggml's reference rule).
    func encode(_ w: [Float], rows: Int, type: GGMLType) throws -> [UInt8] {
        let n = w.count / rows
        var out = [UInt8](repeating: 0, count: rows * type.rowBytes(n))
        try w.withUnsafeBufferPointer { wp in
            try out.withUnsafeMutableBytes { op in
                for r in 0..<rows {
                    let row = Span(_unsafeElements: UnsafeBufferPointer(rebasing: wp[r * n..<(r + 1) * n]))
                    var target = MutableRawSpan(_unsafeBytes: UnsafeMutableRawBufferPointer(
                        rebasing: op[r * type.rowBytes(n)..<(r + 1) * type.rowBytes(n)]))
                    try type.encode(row, into: &target)
                }
            }
        }
        return out
    }

    /// y[t][r] from the blocks' integers and scales, the activations quantized by the kernels'
    /// own Q8_0 quantizer on the current path.
    func referenceQuantized(type: GGMLType, weights: [UInt8], rows: Int, n: Int, x: [Float], xRows: Int) -> [Float] {
        let blocks = n / 32
        var y = [Float](repeating: 0, count: xRows * rows)
        for t in 0..<xRows {
            var xq = [UInt8](repeating: 0, count: blocks * 34)
            x.withUnsafeBufferPointer { xp in
                xq.withUnsafeMutableBytes { gemma_quantize_row_q8_0(xp.baseAddress! + t * n, $0.baseAddress!, Int64(n)) }
            }
            for r in 0..<rows {
                var sum: Float = 0
                for b in 0..<blocks {
                    let xd = Float(Float16(bitPattern: UInt16(xq[b * 34]) | UInt16(xq[b * 34 + 1]) << 8))
                    let base = r * type.rowBytes(n) + b * type.bytesPerBlock
                    let wd = Float(Float16(bitPattern: UInt16(weights[base]) | UInt16(weights[base + 1]) << 8))
                    var s = 0
                    for j in 0..<32 {
                        let q: Int
                        if type == .q8_0 {
                            q = Int(Int8(bitPattern: weights[base + 2 + j]))
                        } else {
                            let byte = weights[base + 2 + j % 16]
                            q = Int(j < 16 ? byte & 0x0F : byte >> 4) - 8
                        }
                        s += q * Int(Int8(bitPattern: xq[b * 34 + 2 + j]))
                    }
                    sum += Float(s) * (wd * xd)
                }
                y[t * rows + r] = sum
            }
        }
        return y
    }

    func testQuantizedMatmulMatchesTheScalarReference() throws {
        // (weight rows, columns): tails of the 8-row interleave and the 2- and 4-row tiles, one
        // block, an odd number of blocks, and (with many activation rows) several spans.
        let shapes = [(1, 32), (7, 64), (8, 96), (9, 160), (13, 2080), (33, 256), (16, 3104), (19, 3104)]
        for type in [GGMLType.q8_0, .q4_0] {
            for (rows, n) in shapes {
                let w = values(rows * n, seed: UInt64(rows * 31 + n), scale: 0.3)
                let weights = try encode(w, rows: rows, type: type)
                let batches = n == 3104 ? [1, 11, 64] : Array(1...9)
                for xRows in batches {
                    let x = values(xRows * n, seed: UInt64(xRows * 7 + n), scale: 2)
                    var packed = [UInt8](repeating: 0, count: Int(gemma_packed_bytes(Int32(type.rawValue), Int64(rows), Int64(n))) + 1)
                    weights.withUnsafeBytes { wp in
                        packed.withUnsafeMutableBytes { gemma_pack_quantized(Int32(type.rawValue), wp.baseAddress!, Int64(rows), Int64(n), $0.baseAddress!) }
                    }
                    forEachPath { path in
                        let expected = referenceQuantized(type: type, weights: weights, rows: rows, n: n, x: x, xRows: xRows)
                        for usePacked in [false, true] {
                            var y = [Float](repeating: .nan, count: xRows * rows)
                            weights.withUnsafeBytes { wp in
                                packed.withUnsafeBytes { pp in
                                    x.withUnsafeBufferPointer { xp in
                                        y.withUnsafeMutableBufferPointer { yp in
                                            gemma_matmul_quantized_f32(Int32(type.rawValue), wp.baseAddress!, usePacked ? pp.baseAddress! : nil,
                                                                       Int64(rows), Int64(n), xp.baseAddress!, Int64(xRows),
                                                                       yp.baseAddress!, Int64(rows))
                                        }
                                    }
                                }
                            }
                            for i in 0..<y.count {
                                XCTAssertEqual(y[i], expected[i], accuracy: 2e-5 * max(1, abs(expected[i])),
                                               "\(type) rows \(rows) n \(n) batch \(xRows) \(path) packed \(usePacked) at \(i)")
                            }
                        }
                    }
                }
            }
        }
    }

    func testFloatMatmulMatchesTheScalarReference() {
        // Odd lengths (vector tails), rows off the 3- and 4-row tiles, and a length that crosses
        // a span with 9 activation rows.
        let shapes = [(1, 1), (5, 7), (4, 9), (7, 77), (13, 300), (3, 6000)]
        for type in [GGMLType.f32, .f16, .bf16] {
            for (rows, n) in shapes {
                let w = values(rows * n, seed: UInt64(rows + 7 * n), scale: 0.5)
                let bytes: [UInt8]
                let rounded: [Float]
                switch type {
                case .f32:
                    rounded = w
                    bytes = w.withUnsafeBytes { Array($0) }
                case .f16:
                    let bits = w.map { Float16($0).bitPattern }
                    rounded = bits.map { Float(Float16(bitPattern: $0)) }
                    bytes = bits.withUnsafeBytes { Array($0) }
                default:
                    let bits = w.map { UInt16($0.bitPattern >> 16) }
                    rounded = bits.map { Float(bitPattern: UInt32($0) << 16) }
                    bytes = bits.withUnsafeBytes { Array($0) }
                }
                // f32 with 64 rows and more goes through OpenBLAS's sgemm.
                for xRows in Array(1...9) + (type == .f32 ? [64, 71] : []) {
                    let x = values(xRows * n, seed: UInt64(xRows + n), scale: 1.5)
                    var expected = [Float](repeating: 0, count: xRows * rows)
                    for t in 0..<xRows {
                        for r in 0..<rows {
                            var sum: Double = 0
                            for k in 0..<n { sum += Double(rounded[r * n + k]) * Double(x[t * n + k]) }
                            expected[t * rows + r] = Float(sum)
                        }
                    }
                    forEachPath { path in
                        var y = [Float](repeating: .nan, count: xRows * rows)
                        bytes.withUnsafeBytes { wp in
                            x.withUnsafeBufferPointer { xp in
                                y.withUnsafeMutableBufferPointer { yp in
                                    gemma_matmul_float(Int32(type.rawValue), wp.baseAddress!, Int64(rows), Int64(n),
                                                       xp.baseAddress!, Int64(xRows), yp.baseAddress!, Int64(rows))
                                }
                            }
                        }
                        for i in 0..<y.count {
                            XCTAssertEqual(y[i], expected[i], accuracy: 1e-4 * max(1, abs(expected[i])),
                                           "\(type) rows \(rows) n \(n) batch \(xRows) \(path) at \(i)")
                        }
                    }
                }
            }
        }
    }

    func testAttentionMatchesTheScalarReference() {
        // Grouped heads (3 query heads per KV head), a head size with vector tails, prompts,
        // and single rows far enough into the cache to cross several spans of positions.
        let heads = 6, kvHeads = 2, headDim = 44
        let scale = 1 / Float(headDim).squareRoot()
        for (start, rows) in [(0, 1), (0, 9), (5, 4), (300, 1), (700, 3)] {
            let length = start + rows
            let q = values(rows * heads * headDim, seed: UInt64(start + rows), scale: 2)
            let keys = values(length * kvHeads * headDim, seed: UInt64(length + 1), scale: 2)
            let vals = values(length * kvHeads * headDim, seed: UInt64(length + 2), scale: 1)
            var expected = [Float](repeating: 0, count: rows * heads * headDim)
            for t in 0..<rows {
                for h in 0..<heads {
                    let g = h / (heads / kvHeads)
                    let visible = start + t + 1
                    var scores = (0..<visible).map { p -> Double in
                        var s: Double = 0
                        for i in 0..<headDim {
                            s += Double(q[(t * heads + h) * headDim + i]) * Double(keys[(p * kvHeads + g) * headDim + i])
                        }
                        return s * Double(scale)
                    }
                    let m = scores.max()!
                    scores = scores.map { exp($0 - m) }
                    let total = scores.reduce(0, +)
                    for i in 0..<headDim {
                        var o: Double = 0
                        for p in 0..<visible { o += scores[p] * Double(vals[(p * kvHeads + g) * headDim + i]) }
                        expected[(t * heads + h) * headDim + i] = Float(o / total)
                    }
                }
            }
            forEachPath { path in
                var out = [Float](repeating: .nan, count: rows * heads * headDim)
                q.withUnsafeBufferPointer { qp in
                    keys.withUnsafeBufferPointer { kp in
                        vals.withUnsafeBufferPointer { vp in
                            out.withUnsafeMutableBufferPointer { op in
                                gemma_attention(qp.baseAddress!, Int64(heads * headDim), Int64(rows), Int64(start),
                                                kp.baseAddress!, vp.baseAddress!, Int64(kvHeads * headDim),
                                                Int32(heads), Int32(kvHeads), Int32(headDim), scale,
                                                op.baseAddress!, Int64(heads * headDim))
                            }
                        }
                    }
                }
                for i in 0..<out.count {
                    XCTAssertEqual(out[i], expected[i], accuracy: 1e-5, "start \(start) rows \(rows) \(path) at \(i)")
                }
            }
        }
    }

    func testGeluMatchesTheScalarFormula() {
        for n in [1, 7, 8, 33, 70_001] {
            let g = values(n, seed: UInt64(n), scale: 12), u = values(n, seed: UInt64(n) + 1, scale: 3)
            forEachPath { path in
                var out = g
                out.withUnsafeMutableBufferPointer { op in
                    u.withUnsafeBufferPointer { gemma_gelu_tanh_mul(op.baseAddress!, $0.baseAddress!, Int64(n)) }
                }
                for i in 0..<n {
                    let x = Double(g[i])
                    let expected = 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))) * Double(u[i])
                    XCTAssertEqual(Double(out[i]), expected, accuracy: 2e-6 * max(1, abs(expected)), "n \(n) \(path) at \(i)")
                }
            }
        }
    }

    func testParallelForRunsEveryTaskOnce() {
        final class Counts: @unchecked Sendable {
            var values: [Int32]
            init(_ n: Int) { values = [Int32](repeating: 0, count: n) }
        }
        for threads in [1, 2, 3, 2, 1] {
            gemma_set_threads(Int32(threads))
            for tasks in [1, 2, 5, 1000] {
                let counts = Counts(tasks)
                counts.values.withUnsafeMutableBufferPointer { buffer in
                    for _ in 0..<20 {
                        gemma_parallel_for(Int32(tasks), { context, task in
                            // Each task has its own slot, so a task run twice (or never) shows.
                            context!.assumingMemoryBound(to: Int32.self)[Int(task)] += 1
                        }, buffer.baseAddress!)
                    }
                }
                XCTAssertEqual(counts.values, [Int32](repeating: 20, count: tasks), "threads \(threads) tasks \(tasks)")
            }
        }
    }
}
