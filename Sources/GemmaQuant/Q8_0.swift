/// ggml's Q8_0 block format: 32 weights in 34 bytes, an f16 scale `d` (little-endian) followed
/// by 32 signed bytes `q`; weight j is `d * q[j]`.
///
/// `quantize` is byte-identical to ggml's reference quantizer `quantize_row_q8_0_ref`
/// (`ggml/src/ggml-quants.c`), which llama.cpp uses to write model files, and to
/// `gguf.quants.quantize(…, Q8_0)`: `amax` is the largest magnitude in the block, `d = amax / 127`
/// in f32, `id = 1 / d` (0 when `d` is 0) computed *before* `d` is rounded to f16, and
/// `q = roundf(x * id)` (halves away from zero). `dequantize` is `dequantize_row_q8_0`.
///
/// Inputs ggml leaves undefined (a block whose `x * id` is infinite or NaN, which happens with
/// infinities, NaNs or an `amax` below about 4e-37) do not trap: such a `q` is 0 for NaN and ±127
/// for ±infinity.
public enum Q8_0 {
    /// Weights per block.
    public static let blockSize = 32
    /// Bytes per block: a 2-byte f16 scale and 32 one-byte quants.
    public static let bytesPerBlock = 34

    /// Quantizes `row` (any whole number of blocks: one row or several rows back to back) into
    /// `output`, which must hold exactly `row.count / 32 * 34` bytes.
    public static func quantize(_ row: Span<Float>, into output: inout MutableRawSpan) throws(QuantizationError) {
        let expected = try GGMLType.q8_0.byteCount(elements: row.count)
        try HalfPrecision.checkOutput(format: "Q8_0", expected: expected, actual: output.byteCount)
        var src = 0
        var dst = 0
        for _ in 0 ..< row.count / blockSize {
            var amax: Float = 0
            for j in 0 ..< blockSize {
                let a = abs(row[src &+ j])
                amax = amax > a ? amax : a          // ggml's MAX(amax, fabsf(v))
            }
            let d = amax / 127
            let id: Float = d != 0 ? 1 / d : 0
            output.storeBytes(of: HalfPrecision.f16Bits(d).littleEndian, toByteOffset: dst, as: UInt16.self)
            for j in 0 ..< blockSize {
                let v = row[src &+ j] * id
                var a = abs(v)
                a = a >= 0 ? a : 0                  // NaN -> 0
                a = a <= 127 ? a : 127              // |x * id| <= 127 for every defined input
                let t = Int32(a)                    // truncation; a - t is exact
                let r = t &+ (a - Float(t) >= 0.5 ? 1 : 0)
                let q = v < 0 ? 0 &- r : r
                output.storeBytes(of: UInt8(truncatingIfNeeded: q), toByteOffset: dst &+ 2 &+ j, as: UInt8.self)
            }
            src &+= blockSize
            dst &+= bytesPerBlock
        }
    }

    /// Dequantizes whole Q8_0 blocks from `input` into `output`, which must hold exactly
    /// `32 * input.byteCount / 34` floats.
    public static func dequantize(_ input: RawSpan, into output: inout MutableSpan<Float>) throws(QuantizationError) {
        guard input.byteCount % bytesPerBlock == 0 else {
            throw .inputSizeNotMultipleOfBlock(format: "Q8_0", byteCount: input.byteCount, bytesPerBlock: bytesPerBlock)
        }
        let blocks = input.byteCount / bytesPerBlock
        try HalfPrecision.checkOutput(format: "Q8_0", expected: blocks * blockSize, actual: output.count)
        var src = 0
        var dst = 0
        for _ in 0 ..< blocks {
            let d = HalfPrecision.float(f16Bits: UInt16(littleEndian: input.unsafeLoadUnaligned(fromByteOffset: src, as: UInt16.self)))
            for j in 0 ..< blockSize {
                let q = input.unsafeLoad(fromByteOffset: src &+ 2 &+ j, as: Int8.self)
                output[dst &+ j] = Float(q) * d
            }
            src &+= bytesPerBlock
            dst &+= blockSize
        }
    }
}
