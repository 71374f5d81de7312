import Foundation
import GemmaQuant
import XCTest

/// Q8_0 / Q4_0 against gguf-py's quantizers (Tests/Fixtures/gguf/quant_vectors.json).
final class QuantizationTests: XCTestCase {
    static let vectors = try! GGUFFixtures.json("quant_vectors.json")

    func testQuantizeRowsMatchGGUFByteForByte() throws {
        let rows = Self.vectors["rows"].arrayValue
        XCTAssertGreaterThan(rows.count, 15)
        for row in rows {
            let name = row["name"].stringValue
            let values = GGUFFixtures.floats(hex: row["f32"].stringValue)
            XCTAssertEqual(values.count, row["count"].intValue, name)
            XCTAssertEqual(GGUFFixtures.hex(try GGMLType.q8_0.encode(values)), row["q8_0"].stringValue, "Q8_0 \(name)")
            var q4 = row["q4_0"].stringValue
            if name == "negative_zeros_32" {
                // The one place gguf-py differs from ggml: for an all-zero block ggml's signed max
                // stays at its initial +0.0, so d = +0.0 / -8 = -0.0 (f16 0x8000), while gguf-py's
                // argmax picks the first element, here -0.0, and gets d = +0.0. We follow ggml.
                XCTAssertTrue(q4.hasPrefix("0000"))
                q4 = "0080" + q4.dropFirst(4)
            }
            XCTAssertEqual(GGUFFixtures.hex(try GGMLType.q4_0.encode(values)), q4, "Q4_0 \(name)")
        }
    }

    func testDequantizeRowsMatchGGUFBitForBit() throws {
        for row in Self.vectors["rows"].arrayValue {
            let name = row["name"].stringValue
            let q8 = try GGMLType.q8_0.decode(GGUFFixtures.bytes(hex: row["q8_0"].stringValue))
            let q4 = try GGMLType.q4_0.decode(GGUFFixtures.bytes(hex: row["q4_0"].stringValue))
            XCTAssertEqual(q8.map(\.bitPattern), GGUFFixtures.floats(hex: row["q8_0_dequantized"].stringValue).map(\.bitPattern), "Q8_0 \(name)")
            XCTAssertEqual(q4.map(\.bitPattern), GGUFFixtures.floats(hex: row["q4_0_dequantized"].stringValue).map(\.bitPattern), "Q4_0 \(name)")
        }
    }

    /// 2^20 generated values (block scales from 2^-24 to 2^22, so some Q4_0 scales overflow f16).
    func testMillionGeneratedValuesMatchGGUFChecksums() throws {
        let sums = Self.vectors["checksums"]
        let n = sums["generated_count"].intValue
        let values = GGUFFixtures.generatedValues(n)
        XCTAssertEqual(GGUFFixtures.checksum(floats: values), sums["generated_f32"].stringValue, "generator differs from the script's")
        let q8 = try GGMLType.q8_0.encode(values)
        let q4 = try GGMLType.q4_0.encode(values)
        XCTAssertEqual(GGUFFixtures.checksum(q8), sums["generated_q8_0"].stringValue)
        XCTAssertEqual(GGUFFixtures.checksum(q4), sums["generated_q4_0"].stringValue)
        XCTAssertEqual(GGUFFixtures.checksum(floats: try GGMLType.q8_0.decode(q8)), sums["generated_q8_0_dequantized"].stringValue)
        XCTAssertEqual(GGUFFixtures.checksum(floats: try GGMLType.q4_0.decode(q4)), sums["generated_q4_0_dequantized"].stringValue)
        XCTAssertEqual(GGUFFixtures.checksum(try GGMLType.f16.encode(values)), sums["generated_f16"].stringValue)
        XCTAssertEqual(GGUFFixtures.checksum(try GGMLType.bf16.encode(values)), sums["generated_bf16"].stringValue)
    }

    func testSpanAPIWritesIntoPartOfALargerBuffer() throws {
        let values = (0 ..< 96).map { Float($0) * 0.37 - 11 }
        var out = [UInt8](repeating: 0xAA, count: 3 * 34 + 10)
        // As an engine quantizing into memory it allocated itself would.
        try out.withUnsafeMutableBytes { raw in
            var middle = UnsafeMutableRawBufferPointer(rebasing: raw[5 ..< 5 + 3 * 34]).mutableBytes
            try Q8_0.quantize(values.span, into: &middle)
        }
        XCTAssertEqual(Array(out[5 ..< 5 + 102]), try GGMLType.q8_0.encode(values))
        XCTAssertEqual(out[0 ..< 5].allSatisfy { $0 == 0xAA }, true)
        XCTAssertEqual(out[107...].allSatisfy { $0 == 0xAA }, true)
    }

    func testRowLengthNotAMultipleOf32IsAnErrorNamingTheLength() {
        for type in [GGMLType.q8_0, .q4_0] {
            let format = type.name
            do {
                _ = try type.encode([Float](repeating: 1, count: 33))
                XCTFail("\(format) accepted 33 values")
            } catch {
                XCTAssertEqual(error, .rowLengthNotMultipleOfBlockSize(format: format, length: 33, blockSize: 32))
                XCTAssertTrue(error.description.contains("33"), error.description)
                XCTAssertTrue(error.description.contains(format), error.description)
            }
        }
        XCTAssertThrowsError(try GGMLType.q8_0.encode([Float](repeating: 1, count: 40)))
        XCTAssertEqual(try GGMLType.f32.encode([1, 2, 3]).count, 12)
        XCTAssertThrowsError(try GGMLType.q8_0.decode([UInt8](repeating: 0, count: 35))) { error in
            XCTAssertEqual(error as? QuantizationError, .inputSizeNotMultipleOfBlock(format: "Q8_0", byteCount: 35, bytesPerBlock: 34))
        }
        XCTAssertThrowsError(try GGMLType.q4_K.encode([Float](repeating: 1, count: 256))) { error in
            XCTAssertEqual(error as? QuantizationError, .unsupportedType(.q4_K))
        }
    }

    func testOutputOfTheWrongSizeIsAnError() {
        let values = [Float](repeating: 1, count: 64)
        var out = [UInt8](repeating: 0, count: 67)
        var span = out.mutableSpan
        var bytes = span.mutableBytes
        XCTAssertThrowsError(try Q8_0.quantize(values.span, into: &bytes)) { error in
            XCTAssertEqual(error as? QuantizationError, .outputSizeMismatch(format: "Q8_0", expected: 68, actual: 67))
        }
    }

    /// ggml leaves these undefined; they must not trap and must not disturb the other blocks.
    func testNonFiniteAndSubnormalInputsDoNotTrap() throws {
        var values = [Float](repeating: 0.5, count: 32 * 4)
        values[0] = .infinity
        values[1] = -.infinity
        values[33] = .nan
        for j in 64 ..< 96 { values[j] = Float(bitPattern: UInt32(j)) }  // f32 subnormals: id = inf
        values[70] = 0
        let q8 = try GGMLType.q8_0.encode(values)
        let q4 = try GGMLType.q4_0.encode(values)
        XCTAssertEqual(Array(q8[3 * 34 ..< 4 * 34]), try GGMLType.q8_0.encode([Float](repeating: 0.5, count: 32)))
        XCTAssertEqual(Array(q4[3 * 18 ..< 4 * 18]), try GGMLType.q4_0.encode([Float](repeating: 0.5, count: 32)))
        // Subnormal block: every nonzero value saturates, the zero (0 * inf = NaN) gives 0.
        XCTAssertEqual(Int8(bitPattern: q8[2 * 34 + 2 + 1]), 127)
        XCTAssertEqual(q8[2 * 34 + 2 + 6], 0)
        _ = try GGMLType.q8_0.decode(q8)
        _ = try GGMLType.q4_0.decode(q4)
    }

    func testTiesInMagnitudeTakeTheFirstValueAsTheQ4Scale() throws {
        var a = [Float](repeating: 0.1, count: 32)
        a[3] = 2
        a[9] = -2
        var b = a
        b[3] = -2
        b[9] = 2
        let qa = try GGMLType.q4_0.encode(a)
        let qb = try GGMLType.q4_0.encode(b)
        // d = max / -8: -0.25 when +2 comes first, +0.25 when -2 does.
        XCTAssertEqual(HalfPrecision.float(f16Bits: UInt16(qa[0]) | UInt16(qa[1]) << 8), -0.25)
        XCTAssertEqual(HalfPrecision.float(f16Bits: UInt16(qb[0]) | UInt16(qb[1]) << 8), 0.25)
        // The first max maps to q = 0 (x * id + 8.5 = 0.5), the opposite value clamps to 15.
        XCTAssertEqual(qa[2 + 3] & 0x0F, 0)
        XCTAssertEqual(qa[2 + 9] & 0x0F, 15)
    }

    func testQ8RoundsHalvesAwayFromZero() throws {
        // amax 127 gives d = 1 and id = 1 exactly, so x * id = x.
        var v = [Float](repeating: 0, count: 32)
        v[0] = 127
        v[1] = 0.5
        v[2] = -0.5
        v[3] = 1.5
        v[4] = -2.5
        v[5] = 0.49999997
        let q = try GGMLType.q8_0.encode(v)
        XCTAssertEqual(q[2 ..< 8].map { Int8(bitPattern: $0) }, [127, 1, -1, 2, -3, 0])
    }
}

/// f16 / bf16 conversions against numpy and gguf-py.
final class HalfPrecisionTests: XCTestCase {
    static let vectors = QuantizationTests.vectors

    func testF16MatchesNumpy() {
        let cases = Self.vectors["f16"].arrayValue
        XCTAssertGreaterThan(cases.count, 200)
        for c in cases {
            let x = Float(bitPattern: UInt32(c["f32"].stringValue, radix: 16)!)
            let expected = UInt16(c["f16"].stringValue, radix: 16)!
            XCTAssertEqual(HalfPrecision.f16Bits(x), expected, "f32 0x\(c["f32"].stringValue)")
        }
    }

    func testBF16MatchesGGUF() {
        let cases = Self.vectors["bf16"].arrayValue
        XCTAssertGreaterThan(cases.count, 200)
        for c in cases {
            let x = Float(bitPattern: UInt32(c["f32"].stringValue, radix: 16)!)
            let expected = UInt16(c["bf16"].stringValue, radix: 16)!
            XCTAssertEqual(HalfPrecision.bf16Bits(x), expected, "f32 0x\(c["f32"].stringValue)")
            XCTAssertEqual(HalfPrecision.float(bf16Bits: expected).bitPattern, UInt32(expected) << 16)
        }
    }

    /// A sweep of 2^20 f32 bit patterns spread over the whole range.
    func testF32SweepMatchesNumpyAndGGUFChecksums() {
        let sums = Self.vectors["checksums"]
        let stride = UInt64(sums["f32_sweep_stride"].intValue)
        var f16: [UInt16] = []
        var bf16: [UInt16] = []
        var count = 0
        var bits: UInt64 = 0
        while bits < 1 << 32 {
            let b = UInt32(bits)
            let x = Float(bitPattern: b)
            let signalling = b & 0x7F80_0000 == 0x7F80_0000 && b & 0x7F_FFFF != 0 && b & 0x40_0000 == 0
            if !signalling { f16.append(HalfPrecision.f16Bits(x)) }
            bf16.append(HalfPrecision.bf16Bits(x))
            count += 1
            bits += stride
        }
        XCTAssertEqual(count, sums["f32_sweep_count"].intValue)
        XCTAssertEqual(f16.count, sums["f32_sweep_f16_count"].intValue)
        XCTAssertEqual(GGUFFixtures.checksum(halves: f16), sums["f32_sweep_f16_without_signalling_nans"].stringValue)
        XCTAssertEqual(GGUFFixtures.checksum(halves: bf16), sums["f32_sweep_bf16"].stringValue)
    }

    func testEveryF16WidensLikeNumpy() {
        let sums = Self.vectors["checksums"]
        var out: [Float] = []
        for h in 0 ... UInt16.max where !(h & 0x7C00 == 0x7C00 && h & 0x03FF != 0) {
            out.append(HalfPrecision.float(f16Bits: h))
        }
        XCTAssertEqual(out.count, sums["all_f16_non_nan_count"].intValue)
        XCTAssertEqual(GGUFFixtures.checksum(floats: out), sums["all_f16_to_f32_without_nans"].stringValue)
    }

    #if !(os(macOS) && arch(x86_64))
    /// Swift's own Float16 conversions (compiler-rt, round to nearest even) agree too.
    func testAgreesWithSwiftFloat16() {
        for h in 0 ... UInt16.max {
            let mine = HalfPrecision.float(f16Bits: h)
            let swift = Float(Float16(bitPattern: h))
            if swift.isNaN {
                XCTAssertTrue(mine.isNaN)
                XCTAssertEqual(mine.sign, swift.sign)
                XCTAssertEqual((mine.bitPattern >> 13) & 0x3FF, UInt32(h & 0x3FF), "f16 0x\(String(h, radix: 16))")
            } else {
                XCTAssertEqual(mine.bitPattern, swift.bitPattern, "f16 0x\(String(h, radix: 16))")
            }
        }
        var bits: UInt64 = 7
        while bits < 1 << 32 {
            let x = Float(bitPattern: UInt32(bits))
            if !x.isNaN {
                XCTAssertEqual(HalfPrecision.f16Bits(x), Float16(x).bitPattern, "f32 0x\(String(bits, radix: 16))")
            }
            bits += 65_521
        }
    }
    #endif

    func testNaNsBecomeQuietAndKeepTheirPayload() {
        // F16C semantics: quiet bit set, sign and top payload bits kept.
        XCTAssertEqual(HalfPrecision.f16Bits(Float(bitPattern: 0x7F80_0001)), 0x7E00)
        XCTAssertEqual(HalfPrecision.f16Bits(Float(bitPattern: 0xFF80_2000)), 0xFE01)
        XCTAssertEqual(HalfPrecision.f16Bits(Float(bitPattern: 0x7FC0_0000)), 0x7E00)
        XCTAssertEqual(HalfPrecision.f16Bits(-.nan), 0xFE00)
        // Widening keeps the payload exactly (as numpy; F16C would set the quiet bit).
        XCTAssertEqual(HalfPrecision.float(f16Bits: 0x7C01).bitPattern, 0x7F80_2000)
        XCTAssertEqual(HalfPrecision.float(f16Bits: 0xFE00).bitPattern, 0xFFC0_0000)
        // bf16: ggml's rule, top half with the quiet bit forced.
        XCTAssertEqual(HalfPrecision.bf16Bits(Float(bitPattern: 0x7F80_0001)), 0x7FC0)
        XCTAssertEqual(HalfPrecision.bf16Bits(Float(bitPattern: 0xFF81_0000)), 0xFFC1)
    }

    func testRoundingEdges() {
        XCTAssertEqual(HalfPrecision.f16Bits(65504), 0x7BFF)
        XCTAssertEqual(HalfPrecision.f16Bits(65519.996), 0x7BFF)
        XCTAssertEqual(HalfPrecision.f16Bits(65520), 0x7C00)
        XCTAssertEqual(HalfPrecision.f16Bits(-.infinity), 0xFC00)
        XCTAssertEqual(HalfPrecision.f16Bits(0x1p-24), 0x0001)
        XCTAssertEqual(HalfPrecision.f16Bits(0x1p-25), 0x0000)
        XCTAssertEqual(HalfPrecision.f16Bits(0x1.8p-24), 0x0002)
        XCTAssertEqual(HalfPrecision.f16Bits(-0x1p-14), 0x8400)
        XCTAssertEqual(HalfPrecision.f16Bits(1 + 0x1p-11), 0x3C00)  // tie to even
        XCTAssertEqual(HalfPrecision.f16Bits(1 + 0x3p-11), 0x3C02)
        XCTAssertEqual(HalfPrecision.float(f16Bits: 0x0001), 0x1p-24)
        XCTAssertEqual(HalfPrecision.float(f16Bits: 0x83FF), -0x1.ff8p-15)
        XCTAssertEqual(HalfPrecision.bf16Bits(Float(bitPattern: 0x3F80_8000)), 0x3F80)
        XCTAssertEqual(HalfPrecision.bf16Bits(Float(bitPattern: 0x3F81_8000)), 0x3F82)
        XCTAssertEqual(HalfPrecision.bf16Bits(.greatestFiniteMagnitude), 0x7F80)
        XCTAssertEqual(HalfPrecision.bf16Bits(Float(bitPattern: 1)), 0x0000)
    }

    func testBufferConversionsRoundTrip() throws {
        let values: [Float] = [0, -0.0, 1, -2.5, 65504, 1e-7, .infinity]
        let f16 = try GGMLType.f16.encode(values)
        XCTAssertEqual(f16.count, 14)
        XCTAssertEqual(try GGMLType.f16.decode(f16).map(\.bitPattern),
                       values.map { HalfPrecision.float(f16Bits: HalfPrecision.f16Bits($0)).bitPattern })
        let bf16 = try GGMLType.bf16.encode(values)
        XCTAssertEqual(try GGMLType.bf16.decode(bf16).map(\.bitPattern),
                       values.map { HalfPrecision.float(bf16Bits: HalfPrecision.bf16Bits($0)).bitPattern })
        XCTAssertEqual(try GGMLType.f32.decode(try GGMLType.f32.encode(values)).map(\.bitPattern), values.map(\.bitPattern))
        XCTAssertThrowsError(try GGMLType.f16.decode([1, 2, 3]))
    }
}
