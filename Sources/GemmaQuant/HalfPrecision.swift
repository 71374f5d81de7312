/// Conversions between `Float` and the two 16-bit float formats ggml stores, as raw bit patterns:
/// IEEE 754 binary16 ("f16", `GGMLType.f16` and the scale of every Q8_0 / Q4_0 block) and
/// bfloat16 ("bf16", `GGMLType.bf16`).
///
/// - f32 -> f16 rounds to nearest, ties to even, like x86 F16C (`vcvtps2ph` with rounding mode 0,
///   ggml's `GGML_FP32_TO_FP16` on such machines) and numpy's `astype(float16)`: values from
///   65520 up become infinity, values of magnitude up to 2^-25 become (signed) zero, the range in
///   between 2^-25 and 2^-14 becomes f16 subnormals. A NaN keeps its sign and the top 10 bits of
///   its payload and is made quiet (F16C's rule; numpy keeps a signalling NaN signalling, ggml's
///   portable C fallback returns the canonical quiet NaN `0x7E00`). Quiet NaNs agree in all three.
/// - f16 -> f32 is exact; a NaN keeps its payload (shifted left by 13) and its quiet bit, as
///   numpy does.
/// - f32 -> bf16 is ggml's `ggml_compute_fp32_to_bf16`: round to nearest even on the top 16 bits
///   (so the largest finite values can round to infinity; subnormals are kept); a NaN keeps its
///   top 16 bits with the quiet bit (0x0040) set.
/// - bf16 -> f32 is exact (the 16 bits become the high half).
///
/// The scalar functions are `@inlinable`; the span functions convert whole buffers.
public enum HalfPrecision {
    /// The f16 bit pattern nearest to `x` (ties to even).
    @inlinable @inline(__always)
    public static func f16Bits(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        let sign = UInt16(truncatingIfNeeded: (bits >> 16) & 0x8000)
        let a = bits & 0x7FFF_FFFF
        let magnitude: UInt32
        if a >= 0x3880_0000 {                       // 2^-14 and up: normal f16, inf, NaN
            if a > 0x7F80_0000 {                    // NaN: quiet, top payload bits kept
                magnitude = 0x7E00 | ((a >> 13) & 0x03FF)
            } else if a >= 0x477F_F000 {            // 65520 and up round to infinity
                magnitude = 0x7C00
            } else {                                // rebias the exponent, round on bit 13
                let r = a &- 0x3800_0000
                magnitude = (r &+ 0x0FFF &+ ((r >> 13) & 1)) >> 13
            }
        } else if a > 0x3300_0000 {                 // (2^-25, 2^-14): f16 subnormal
            let shift = 126 &- (a >> 23)            // 14 ... 24
            let m = (a & 0x007F_FFFF) | 0x0080_0000
            magnitude = (m &+ ((1 << (shift &- 1)) &- 1) &+ ((m >> shift) & 1)) >> shift
        } else {                                    // rounds to zero (2^-25 is a tie: to even)
            magnitude = 0
        }
        return sign | UInt16(truncatingIfNeeded: magnitude)
    }

    /// The `Float` an f16 bit pattern stands for (exact).
    @inlinable @inline(__always)
    public static func float(f16Bits h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = UInt32(h >> 10) & 0x1F
        let mantissa = UInt32(h & 0x03FF)
        if exponent == 0x1F {                       // infinity, NaN (payload kept)
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        if exponent != 0 {                          // normal
            return Float(bitPattern: sign | ((exponent &+ 112) << 23) | (mantissa << 13))
        }
        // zero or subnormal: mantissa * 2^-24, exact in f32
        let magnitude = Float(mantissa) * 0x1p-24
        return Float(bitPattern: sign | magnitude.bitPattern)
    }

    /// The bf16 bit pattern of `x` as ggml's `ggml_compute_fp32_to_bf16` makes it.
    @inlinable @inline(__always)
    public static func bf16Bits(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        if bits & 0x7FFF_FFFF > 0x7F80_0000 {       // NaN: keep the top half, force quiet
            return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040
        }
        return UInt16(truncatingIfNeeded: (bits &+ (0x7FFF &+ ((bits >> 16) & 1))) >> 16)
    }

    /// The `Float` a bf16 bit pattern stands for (exact).
    @inlinable @inline(__always)
    public static func float(bf16Bits h: UInt16) -> Float {
        Float(bitPattern: UInt32(h) << 16)
    }

    // MARK: Buffers

    /// Converts `source` to f16, writing `2 * source.count` little-endian bytes into `output`.
    /// - Throws: `QuantizationError.outputSizeMismatch` unless `output` has exactly that many bytes.
    public static func encodeF16(_ source: Span<Float>, into output: inout MutableRawSpan) throws(QuantizationError) {
        try checkOutput(format: "F16", expected: source.count * 2, actual: output.byteCount)
        for i in source.indices {
            output.storeBytes(of: f16Bits(source[i]).littleEndian, toByteOffset: i &* 2, as: UInt16.self)
        }
    }

    /// Converts little-endian f16 values in `input` to `Float`s in `output`.
    /// - Throws: `QuantizationError` if `input` has an odd byte count or `output` is not half as long.
    public static func decodeF16(_ input: RawSpan, into output: inout MutableSpan<Float>) throws(QuantizationError) {
        let n = try checkHalfInput(format: "F16", input: input, outputCount: output.count)
        for i in 0..<n {
            output[i] = float(f16Bits: UInt16(littleEndian: input.unsafeLoadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)))
        }
    }

    /// Converts `source` to bf16, writing `2 * source.count` little-endian bytes into `output`.
    /// - Throws: `QuantizationError.outputSizeMismatch` unless `output` has exactly that many bytes.
    public static func encodeBF16(_ source: Span<Float>, into output: inout MutableRawSpan) throws(QuantizationError) {
        try checkOutput(format: "BF16", expected: source.count * 2, actual: output.byteCount)
        for i in source.indices {
            output.storeBytes(of: bf16Bits(source[i]).littleEndian, toByteOffset: i &* 2, as: UInt16.self)
        }
    }

    /// Converts little-endian bf16 values in `input` to `Float`s in `output`.
    /// - Throws: `QuantizationError` if `input` has an odd byte count or `output` is not half as long.
    public static func decodeBF16(_ input: RawSpan, into output: inout MutableSpan<Float>) throws(QuantizationError) {
        let n = try checkHalfInput(format: "BF16", input: input, outputCount: output.count)
        for i in 0..<n {
            output[i] = float(bf16Bits: UInt16(littleEndian: input.unsafeLoadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)))
        }
    }

    /// `values` as f16 bit patterns.
    public static func f16Bits(_ values: [Float]) -> [UInt16] { values.map { f16Bits($0) } }

    /// `values` as bf16 bit patterns.
    public static func bf16Bits(_ values: [Float]) -> [UInt16] { values.map { bf16Bits($0) } }

    static func checkOutput(format: String, expected: Int, actual: Int) throws(QuantizationError) {
        if expected != actual {
            throw .outputSizeMismatch(format: format, expected: expected, actual: actual)
        }
    }

    static func checkHalfInput(format: String, input: RawSpan, outputCount: Int) throws(QuantizationError) -> Int {
        if input.byteCount % 2 != 0 {
            throw .inputSizeNotMultipleOfBlock(format: format, byteCount: input.byteCount, bytesPerBlock: 2)
        }
        let n = input.byteCount / 2
        if n != outputCount {
            throw .outputSizeMismatch(format: format, expected: n, actual: outputCount)
        }
        return n
    }
}
