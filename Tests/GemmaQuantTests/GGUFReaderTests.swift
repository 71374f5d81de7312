import Foundation
import GemmaQuant
import XCTest

/// GGUFFile against files written by gguf-py's GGUFWriter, and against broken files.
final class GGUFReaderTests: XCTestCase {
    func checkFileMatchesDescription(_ name: String) throws {
        let description = try GGUFFixtures.json("\(name).json")
        let file = try GGUFFile(path: GGUFFixtures.path("\(name).gguf"))
        XCTAssertEqual(file.version, UInt32(description["version"].intValue))
        XCTAssertEqual(file.alignment, description["alignment"].intValue)
        XCTAssertEqual(file.fileSize, description["file_size"].intValue)
        XCTAssertEqual(file.dataOffset % file.alignment, 0)

        // Metadata: same keys in the same order, same types, same values (floats bit for bit).
        let expected = GGUFFixtures.metadata(description)
        XCTAssertEqual(file.metadata.keys, expected.keys)
        for (mine, theirs) in zip(file.metadata.entries, expected.entries) {
            XCTAssertEqual(mine.value, theirs.value, mine.key)
            XCTAssertEqual(mine.value.typeName, theirs.value.typeName, mine.key)
            XCTAssertEqual("\(mine.value)", "\(theirs.value)", mine.key)  // distinguishes -0.0 from 0.0
        }

        // Tensors: names, ggml-order dims, types, offsets packed and aligned, bytes, values.
        let tensors = description["tensors"].arrayValue
        XCTAssertEqual(file.tensors.map(\.name), tensors.map { $0["name"].stringValue })
        var expectedOffset = 0
        for t in tensors {
            let info = try file.tensor(named: t["name"].stringValue)
            let data = GGUFFixtures.bytes(hex: t["data"].stringValue)
            let values = GGUFFixtures.floats(hex: t["values"].stringValue)
            XCTAssertEqual(info.dimensions, t["dims"].arrayValue.map(\.intValue), info.name)
            XCTAssertEqual(info.type, GGUFFixtures.type(t["type"].stringValue), info.name)
            XCTAssertEqual(info.type.rawValue, UInt32(t["type_id"].intValue), info.name)
            XCTAssertEqual(info.elementCount, values.count, info.name)
            XCTAssertEqual(info.byteCount, data.count, info.name)
            XCTAssertEqual(info.offset, expectedOffset, info.name)
            expectedOffset += (data.count + file.alignment - 1) / file.alignment * file.alignment
            XCTAssertEqual(try file.bytes(of: info), data, info.name)
            try file.withBytes(of: info) { span in
                XCTAssertEqual(span.byteCount, data.count)
                if !data.isEmpty {
                    XCTAssertEqual(span.unsafeLoad(fromByteOffset: data.count - 1, as: UInt8.self), data.last)
                }
            }
            let unsafe = try file.unsafeBytes(of: info)
            XCTAssertEqual(Array(unsafe), data)
            // The library's own encoder gives gguf-py's bytes for the source values...
            XCTAssertEqual(try info.type.encode(values), data, "encoding \(info.name) as \(info.type)")
            // ...and decoding gives the source values back for F32, their roundings otherwise.
            let decoded = try file.floats(of: info)
            if info.type == .f32 { XCTAssertEqual(decoded.map(\.bitPattern), values.map(\.bitPattern), info.name) }
            XCTAssertEqual(decoded.map(\.bitPattern), try info.type.decode(data).map(\.bitPattern), info.name)
        }
    }

    func testReadsGGUFPyBasicFile() throws { try checkFileMatchesDescription("basic") }

    func testReadsGGUFPyFileWithAlignment64() throws { try checkFileMatchesDescription("aligned64") }

    func testReadsFromMemoryToo() throws {
        let bytes = [UInt8](try GGUFFixtures.data("basic.gguf"))
        let file = try GGUFFile(bytes: bytes, name: "basic in memory")
        XCTAssertEqual(file.path, "basic in memory")
        XCTAssertEqual(file.tensors.count, 7)
    }

    func testTypedAccessors() throws {
        let file = try GGUFFile(path: GGUFFixtures.path("basic.gguf"))
        XCTAssertEqual(try file.string("general.architecture"), "testarch")
        XCTAssertEqual(try file.string("test.string"), "héllo, wörld ✓ 日本語 🙂")
        XCTAssertEqual(try file.string("test.string_empty"), "")
        XCTAssertEqual(try file.int("test.u8"), 255)
        XCTAssertEqual(try file.int("test.i8"), -128)
        XCTAssertEqual(try file.int("test.u16"), 65535)
        XCTAssertEqual(try file.int("test.i16"), -32768)
        XCTAssertEqual(try file.int("test.u32"), 4_294_967_295)
        XCTAssertEqual(try file.int("test.i32"), -2_147_483_648)
        XCTAssertEqual(try file.int("test.i64"), Int.min)
        XCTAssertEqual(try file.int("test.u64_small"), 256_000)
        XCTAssertEqual(try file.int("testarch.context_length"), 8192)
        XCTAssertEqual(try file.float("test.f32"), 1e-6)
        XCTAssertEqual(try file.float("testarch.attention.layer_norm_rms_epsilon"), 1e-6)
        XCTAssertEqual(try file.double("test.f64"), Double.pi)
        XCTAssertEqual(try file.float("test.f64"), Float(Double.pi))
        XCTAssertEqual(try file.bool("test.bool_true"), true)
        XCTAssertEqual(try file.bool("test.bool_false"), false)
        XCTAssertEqual(try file.stringArray("test.array.strings"), ["<pad>", "<eos>", "", "▁the", "日本", "<0x0A>"])
        XCTAssertEqual(try file.intArray("test.array.i32"), [0, -1, 2_147_483_647, -2_147_483_648, 106, 107])
        XCTAssertEqual(try file.intArray("test.array.u8"), [0, 1, 254, 255])
        XCTAssertEqual(try file.intArray("test.array.i64"), [Int.min, Int.max, 0])
        XCTAssertEqual(try file.floatArray("test.array.f32"), [0, -1.5, 1e-6, -1000.25, .infinity])
        XCTAssertEqual(try file.floatArray("test.array.f64"), [0.1, -2.5])
        XCTAssertEqual(try file.floatArray("tokenizer.ggml.scores"), [0, -1, -2.5, -1e9])
        XCTAssertEqual(file.value("test.array.nested_i32"), .array(.array([.int32([1, 2, 3]), .int32([4]), .int32([-5, 6])])))
        XCTAssertEqual(file.value("test.array.nested_i32")?.typeName, "arr[arr[i32]]")
        XCTAssertNil(file.value("nope"))

        // Errors name the key and what was wrong.
        let missing = assertGGUFError(try file.string("general.name")) { $0 == .missingKey("general.name") }
        XCTAssertTrue(missing?.description.contains("general.name") == true)
        XCTAssertTrue(missing?.description.contains("basic.gguf") == true)
        let wrong = assertGGUFError(try file.string("test.u8")) { $0 == .wrongType(key: "test.u8", expected: "str", found: "u8") }
        XCTAssertTrue(wrong?.description.contains("test.u8") == true)
        assertGGUFError(try file.int("test.f32")) { $0 == .wrongType(key: "test.f32", expected: "an integer", found: "f32") }
        assertGGUFError(try file.int("test.u64")) { if case .valueOutOfRange(key: "test.u64", _) = $0 { return true }; return false }
        assertGGUFError(try file.float("test.i32")) { if case .wrongType(key: "test.i32", _, found: "i32") = $0 { return true }; return false }
        assertGGUFError(try file.bool("test.u8")) { if case .wrongType(key: "test.u8", expected: "bool", _) = $0 { return true }; return false }
        assertGGUFError(try file.stringArray("test.array.i32")) { $0 == .wrongType(key: "test.array.i32", expected: "arr[str]", found: "arr[i32]") }
        assertGGUFError(try file.stringArray("test.string")) { $0 == .wrongType(key: "test.string", expected: "arr[str]", found: "str") }
        assertGGUFError(try file.intArray("test.array.strings")) { if case .wrongType(key: "test.array.strings", _, found: "arr[str]") = $0 { return true }; return false }
        assertGGUFError(try file.intArray("test.array.u64")) { if case .valueOutOfRange(key: "test.array.u64", _) = $0 { return true }; return false }
        assertGGUFError(try file.floatArray("test.array.bool")) { if case .wrongType(key: "test.array.bool", _, found: "arr[bool]") = $0 { return true }; return false }
        assertGGUFError(try file.tensor(named: "output.weight")) { $0 == .missingTensor("output.weight") }
    }

    func testTensorInfosFromAnotherFileAreRejected() throws {
        let a = try GGUFFile(path: GGUFFixtures.path("basic.gguf"))
        let b = try GGUFFile(path: GGUFFixtures.path("aligned64.gguf"))
        assertGGUFError(try a.bytes(of: b.tensors[0])) { $0 == .foreignTensorInfo("a.vector") }
    }

    // MARK: Broken files

    func testMissingFileAndDirectory() {
        let e = assertGGUFError(try GGUFFile(path: "/nonexistent/model.gguf")) { if case .cannotOpen = $0 { return true }; return false }
        XCTAssertTrue(e?.description.contains("No such file or directory") == true, e?.description ?? "")
        assertGGUFError(try GGUFFile(path: GGUFFixtures.directory.path)) { $0 == .notARegularFile }
    }

    func testEmptyAndShortFilesAreTruncated() throws {
        let dir = try ScratchDirectory()
        defer { dir.remove() }
        XCTAssertTrue(FileManager.default.createFile(atPath: dir.file("empty.gguf"), contents: Data()))
        let e = assertGGUFError(try GGUFFile(path: dir.file("empty.gguf"))) { $0 == .truncated(offset: 0, reading: "the magic") }
        XCTAssertTrue(e?.description.contains("offset 0") == true)
        assertGGUFError(try GGUFFile(bytes: Array("GGU".utf8))) { $0 == .truncated(offset: 0, reading: "the magic") }
        assertGGUFError(try GGUFFile(bytes: Array("GGUF".utf8) + [3, 0])) { $0 == .truncated(offset: 4, reading: "the version") }
    }

    func testBadMagicAndVersions() {
        let e = assertGGUFError(try GGUFFile(bytes: Array("GGML".utf8) + [UInt8](repeating: 0, count: 40))) {
            $0 == .badMagic(found: Array("GGML".utf8))
        }
        XCTAssertTrue(e?.description.contains("GGML") == true)
        for version: UInt32 in [0, 1, 4, 0x0300_0000] {
            var b = ByteBuilder()
            b.header(version: version, tensors: 0, kvs: 0)
            assertGGUFError(try GGUFFile(bytes: b.bytes)) { $0 == .unsupportedVersion(version) }
        }
        var v2 = ByteBuilder()
        v2.header(version: 2, tensors: 0, kvs: 1)
        v2.string("k")
        v2.u32(GGUFValueType.uint8.rawValue)
        v2.u8(7)
        XCTAssertEqual(try GGUFFile(bytes: v2.bytes).int("k"), 7)
    }

    func testEveryTruncationOfARealFileIsANamedError() throws {
        let bytes = [UInt8](try GGUFFixtures.data("basic.gguf"))
        let full = try GGUFFile(bytes: bytes)
        let last = full.tensors.last!
        let endOfData = full.dataOffset + last.offset + last.byteCount
        XCTAssertLessThan(endOfData, bytes.count)
        for length in 0 ..< bytes.count {
            do {
                _ = try GGUFFile(bytes: Array(bytes[..<length]))
                // Only the padding after the last tensor may go missing.
                XCTAssertGreaterThanOrEqual(length, endOfData, "a file cut to \(length) bytes was accepted")
            } catch {
                switch error.problem {
                case .truncated, .stringTooLong, .arrayTooLong, .absurdCount: XCTAssertLessThan(length, full.dataOffset)
                case .tensorDataOutOfRange: XCTAssertGreaterThanOrEqual(length, full.dataOffset - 32)
                default: XCTFail("cut at \(length): \(error)")
                }
            }
        }
    }

    func testTruncatedDataNamesTheTensor() throws {
        let bytes = [UInt8](try GGUFFixtures.data("basic.gguf"))
        let e = assertGGUFError(try GGUFFile(bytes: Array(bytes.dropLast(40)), name: "cut.gguf")) {
            if case .tensorDataOutOfRange(tensor: "q8_0.norm_like", _, _, _, _) = $0 { return true }
            return false
        }
        XCTAssertTrue(e?.description.contains("q8_0.norm_like") == true)
    }

    func testRandomGarbageNeverCrashes() {
        var rng = SplitMix(seed: 1234)
        for i in 0 ..< 3000 {
            let length = Int(rng.next() % 600)
            var bytes = (0 ..< length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if i % 2 == 0, length >= 24 {
                // A valid header with small random counts, so parsing goes deeper.
                var b = ByteBuilder()
                b.header(version: i % 4 == 0 ? 3 : 2, tensors: rng.next() % 4, kvs: rng.next() % 6)
                bytes.replaceSubrange(0 ..< 24, with: b.bytes)
            }
            do {
                _ = try GGUFFile(bytes: bytes)  // a valid header with nothing after it is a valid file
            } catch {
                XCTAssertFalse(error.description.isEmpty)  // typed: always a GGUFError
            }
        }
    }

    func testMutatedRealFilesNeverCrash() throws {
        let original = [UInt8](try GGUFFixtures.data("basic.gguf"))
        let headerEnd = try GGUFFile(bytes: original).dataOffset
        var rng = SplitMix(seed: 99)
        var accepted = 0
        for _ in 0 ..< 3000 {
            var bytes = original
            for _ in 0 ..< 1 + Int(rng.next() % 4) {
                let at = Int(rng.next() % UInt64(headerEnd))
                switch rng.next() % 3 {
                case 0: bytes[at] = UInt8(truncatingIfNeeded: rng.next())
                case 1: bytes[at] ^= 1 << UInt8(rng.next() % 8)
                default: bytes[at] = [0x00, 0xFF, 0x7F, 0x80][Int(rng.next() % 4)]
                }
            }
            do {
                _ = try GGUFFile(bytes: bytes)
                accepted += 1  // a mutation inside a string or number can still be a valid file
            } catch {
                XCTAssertFalse(error.description.isEmpty)
            }
        }
        XCTAssertLessThan(accepted, 3000)
    }

    func testAbsurdLengthsAndCounts() {
        var b = ByteBuilder()
        b.header(tensors: 0, kvs: 1)
        b.u64(1 << 62)
        b.raw(Array("key".utf8) + [UInt8](repeating: 0, count: 64))
        assertGGUFError(try GGUFFile(bytes: b.bytes)) {
            $0 == .stringTooLong(length: 1 << 62, offset: 24, reading: "the key of metadata entry 0")
        }

        var a = ByteBuilder()
        a.header(tensors: 0, kvs: 1)
        a.string("tokenizer.ggml.tokens")
        a.u32(GGUFValueType.array.rawValue)
        a.u32(GGUFValueType.string.rawValue)
        a.u64(UInt64.max)
        a.raw([UInt8](repeating: 0, count: 64))
        let e = assertGGUFError(try GGUFFile(bytes: a.bytes)) {
            if case .arrayTooLong(count: UInt64.max, _, key: "tokenizer.ggml.tokens") = $0 { return true }
            return false
        }
        XCTAssertTrue(e?.description.contains("tokenizer.ggml.tokens") == true)

        var c = ByteBuilder()
        c.header(tensors: UInt64.max, kvs: 0)
        assertGGUFError(try GGUFFile(bytes: c.bytes)) {
            if case .absurdCount(what: "tensor count", count: UInt64.max, offset: 8) = $0 { return true }
            return false
        }
        var d = ByteBuilder()
        d.header(tensors: 0, kvs: 1 << 40)
        assertGGUFError(try GGUFFile(bytes: d.bytes)) {
            if case .absurdCount(what: "metadata key/value count", _, offset: 16) = $0 { return true }
            return false
        }
    }

    func testUnknownValueTypeDuplicateKeyAndBadStrings() {
        var b = ByteBuilder()
        b.header(tensors: 0, kvs: 1)
        b.string("weird")
        b.u32(13)
        b.u64(0)
        assertGGUFError(try GGUFFile(bytes: b.bytes)) { $0 == .unknownValueType(13, key: "weird", offset: 37) }

        var arr = ByteBuilder()
        arr.header(tensors: 0, kvs: 1)
        arr.string("weird.array")
        arr.u32(GGUFValueType.array.rawValue)
        arr.u32(99)
        arr.u64(1)
        assertGGUFError(try GGUFFile(bytes: arr.bytes)) { if case .unknownValueType(99, key: "weird.array", _) = $0 { return true }; return false }

        var dup = ByteBuilder()
        dup.header(tensors: 0, kvs: 2)
        for _ in 0 ..< 2 {
            dup.string("general.name")
            dup.u32(GGUFValueType.string.rawValue)
            dup.string("x")
        }
        assertGGUFError(try GGUFFile(bytes: dup.bytes)) { $0 == .duplicateKey("general.name") }

        var utf = ByteBuilder()
        utf.header(tensors: 0, kvs: 1)
        utf.u64(2)
        utf.raw([0xC3, 0x28])
        utf.u32(GGUFValueType.uint8.rawValue)
        utf.u8(0)
        assertGGUFError(try GGUFFile(bytes: utf.bytes)) { $0 == .invalidUTF8(offset: 24, reading: "the key of metadata entry 0") }
    }

    func testDeeplyNestedArraysAreRejectedWithoutRecursingForever() {
        var b = ByteBuilder()
        b.header(tensors: 0, kvs: 1)
        b.string("bomb")
        b.u32(GGUFValueType.array.rawValue)
        for _ in 0 ..< 100_000 {
            b.u32(GGUFValueType.array.rawValue)
            b.u64(1)
        }
        b.u32(GGUFValueType.uint8.rawValue)
        b.u64(0)
        assertGGUFError(try GGUFFile(bytes: b.bytes)) { if case .arraysNestedTooDeep(key: "bomb", _) = $0 { return true }; return false }
    }

    func testAlignmentMustBeAPowerOfTwo() {
        for value: UInt32 in [0, 3, 48] {
            var b = ByteBuilder()
            b.header(tensors: 0, kvs: 1)
            b.string("general.alignment")
            b.u32(GGUFValueType.uint32.rawValue)
            b.u32(value)
            assertGGUFError(try GGUFFile(bytes: b.bytes)) { if case .invalidAlignment = $0 { return true }; return false }
        }
        var s = ByteBuilder()
        s.header(tensors: 0, kvs: 1)
        s.string("general.alignment")
        s.u32(GGUFValueType.string.rawValue)
        s.string("32")
        assertGGUFError(try GGUFFile(bytes: s.bytes)) { if case .invalidAlignment = $0 { return true }; return false }
    }

    /// A file with one tensor whose info is given; data is `dataBytes` zero bytes after padding.
    func oneTensorFile(_ name: String = "t", dims: [UInt64], type: UInt32, offset: UInt64 = 0, dataBytes: Int,
                       second: (String, UInt64)? = nil) -> [UInt8] {
        var b = ByteBuilder()
        b.header(tensors: second == nil ? 1 : 2, kvs: 0)
        b.tensorInfo(name, dims: dims, type: type, offset: offset)
        if let (n, o) = second { b.tensorInfo(n, dims: dims, type: type, offset: o) }
        b.pad(to: 32)
        b.raw([UInt8](repeating: 0, count: dataBytes))
        return b.bytes
    }

    func testTensorInfoErrorsNameTheTensor() {
        XCTAssertNoThrow(try GGUFFile(bytes: oneTensorFile(dims: [32, 2], type: 8, dataBytes: 68)))
        assertGGUFError(try GGUFFile(bytes: oneTensorFile("blk.0.attn_q.weight", dims: [32, 2], type: 99, dataBytes: 68))) {
            $0 == .unknownTensorType(tensor: "blk.0.attn_q.weight", typeID: 99)
        }
        let unknown = assertGGUFError(try GGUFFile(bytes: oneTensorFile("x", dims: [256], type: 13, dataBytes: 176))) {
            $0 == .unknownTensorType(tensor: "x", typeID: 13)
        }
        XCTAssertTrue(unknown?.description.contains("'x'") == true)
        assertGGUFError(try GGUFFile(bytes: oneTensorFile("five", dims: [1, 1, 1, 1, 1], type: 0, dataBytes: 4))) {
            $0 == .tooManyDimensions(tensor: "five", count: 5)
        }
        assertGGUFError(try GGUFFile(bytes: oneTensorFile("q", dims: [33], type: 8, dataBytes: 64))) {
            $0 == .rowNotMultipleOfBlock(tensor: "q", rowLength: 33, type: .q8_0)
        }
        assertGGUFError(try GGUFFile(bytes: oneTensorFile("big", dims: [UInt64.max], type: 0, dataBytes: 4))) {
            $0 == .invalidDimensions(tensor: "big", dimensions: [UInt64.max])
        }
        assertGGUFError(try GGUFFile(bytes: oneTensorFile("big2", dims: [1 << 40, 1 << 40], type: 0, dataBytes: 4))) {
            $0 == .invalidDimensions(tensor: "big2", dimensions: [1 << 40, 1 << 40])
        }
        assertGGUFError(try GGUFFile(bytes: oneTensorFile("m", dims: [4], type: 0, offset: 8, dataBytes: 64))) {
            $0 == .misalignedTensorOffset(tensor: "m", offset: 8, alignment: 32)
        }
        assertGGUFError(try GGUFFile(bytes: oneTensorFile("far", dims: [4], type: 0, offset: 1 << 40, dataBytes: 64))) {
            if case .tensorDataOutOfRange(tensor: "far", offset: 1 << 40, byteCount: 16, _, _) = $0 { return true }
            return false
        }
        assertGGUFError(try GGUFFile(bytes: oneTensorFile("short", dims: [32, 4], type: 0, dataBytes: 511))) {
            if case .tensorDataOutOfRange(tensor: "short", offset: 0, byteCount: 512, _, _) = $0 { return true }
            return false
        }
        assertGGUFError(try GGUFFile(bytes: oneTensorFile("same", dims: [4], type: 0, dataBytes: 64, second: ("same", 32)))) {
            $0 == .duplicateTensorName("same")
        }
    }

    func testZeroTensorsAndEmptyFileLikeHeaders() throws {
        var b = ByteBuilder()
        b.header(tensors: 0, kvs: 0)
        let f = try GGUFFile(bytes: b.bytes)
        XCTAssertEqual(f.tensors.count, 0)
        XCTAssertEqual(f.metadata.count, 0)
    }
}

/// A small deterministic random generator for the garbage tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return GGUFFixtures.splitmix64(state)
    }
}
