/// ggml's Q4_0 block format: 32 weights in 18 bytes, an f16 scale `d` (little-endian) followed
/// by 16 bytes of 4-bit quants; the low nibble of byte j is weight j, the high nibble weight
/// j + 16, and a weight is `d * (q - 8)`.
///
/// `quantize` is byte-identical to ggml's reference quantizer `quantize_row_q4_0_ref`
/// (`ggml/src/ggml-quants.c`) and to `gguf.quants.quantize(…, Q4_0)`: `max` is the signed value of
/// largest magnitude in the block (the first one when a positive and a negative value tie),
/// `d = max / -8` in f32, `id = 1 / d` (0 when `d` is 0) computed before `d` is rounded to f16,
/// and `q = min(15, (int8)(x * id + 8.5))` (truncation). `dequantize` is `dequantize_row_q4_0`.
///
/// Inputs ggml leaves undefined (infinite or NaN `x * id`) do not trap: `x * id + 8.5` is clamped
/// to [0, 15] with NaN giving 0.
public enum Q4_0 {
    /// Weights per block.
    public static let blockSize = 32
    /// Bytes per block: a 2-byte f16 scale and 16 bytes of nibbles.
    public static let bytesPerBlock = 18

    @inline(__always)
    static func nibble(_ x: Float) -> UInt8 {
        var t = x + 8.5
        t = t > 0 ? t : 0                           // also NaN -> 0
        t = t < 15 ? t : 15                         // min(15, …)
        return UInt8(truncatingIfNeeded: Int32(t))  // truncation toward zero, as (int8_t)
    }

    /// Quantizes `row` (any whole number of blocks: one row or several rows back to back) into
    /// `output`, which must hold exactly `row.count / 32 * 18` bytes.
    public static func quantize(_ row: Span<Float>, into output: inout MutableRawSpan) throws(QuantizationError) {
        let expected = try GGMLType.q4_0.byteCount(elements: row.count)
        try HalfPrecision.checkOutput(format: "Q4_0", expected: expected, actual: output.byteCount)
        var src = 0
        var dst = 0
        for _ in 0 ..< row.count / blockSize {
            var amax: Float = 0
            var max: Float = 0
            for j in 0 ..< blockSize {
                let v = row[src &+ j]
                let a = abs(v)
                if amax < a {                       // strict: the first of equal magnitudes wins
                    amax = a
                    max = v
                }
            }
            let d = max / -8
            let id: Float = d != 0 ? 1 / d : 0
            output.storeBytes(of: HalfPrecision.f16Bits(d).littleEndian, toByteOffset: dst, as: UInt16.self)
            for j in 0 ..< blockSize / 2 {
                let lo = nibble(row[src &+ j] * id)
                let hi = nibble(row[src &+ blockSize / 2 &+ j] * id)
                output.storeBytes(of: lo | (hi << 4), toByteOffset: dst &+ 2 &+ j, as: UInt8.self)
            }
            src &+= blockSize
            dst &+= bytesPerBlock
        }
    }

    /// Dequantizes whole Q4_0 blocks from `input` into `output`, which must hold exactly
    /// `32 * input.byteCount / 18` floats.
    public static func dequantize(_ input: RawSpan, into output: inout MutableSpan<Float>) throws(QuantizationError) {
        guard input.byteCount % bytesPerBlock == 0 else {
            throw .inputSizeNotMultipleOfBlock(format: "Q4_0", byteCount: input.byteCount, bytesPerBlock: bytesPerBlock)
        }
        let blocks = input.byteCount / bytesPerBlock
        try HalfPrecision.checkOutput(format: "Q4_0", expected: blocks * blockSize, actual: output.count)
        var src = 0
        var dst = 0
        for _ in 0 ..< blocks {
            let d = HalfPrecision.float(f16Bits: UInt16(littleEndian: input.unsafeLoadUnaligned(fromByteOffset: src, as: UInt16.self)))
            for j in 0 ..< blockSize / 2 {
                let byte = input.unsafeLoad(fromByteOffset: src &+ 2 &+ j, as: UInt8.self)
                output[dst &+ j] = Float(Int32(byte & 0x0F) &- 8) * d
                output[dst &+ blockSize / 2 &+ j] = Float(Int32(byte >> 4) &- 8) * d
            }
            src &+= bytesPerBlock
            dst &+= blockSize
        }
    }
}
