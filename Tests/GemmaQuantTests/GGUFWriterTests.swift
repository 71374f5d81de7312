import Foundation
import GemmaQuant
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// GGUFWriter: byte-identical to gguf-py, atomic, and clean on every failure.
final class GGUFWriterTests: XCTestCase {
    var dir: ScratchDirectory!

    override func setUpWithError() throws { dir = try ScratchDirectory() }
    override func tearDown() { dir.remove() }

    /// Rewrites a gguf-py fixture from its JSON description: same metadata, same tensors in the
    /// same order, the data encoded by this library from the source values.
    func rewrite(_ name: String) throws -> (written: [UInt8], original: [UInt8]) {
        let description = try GGUFFixtures.json("\(name).json")
        let metadata = GGUFFixtures.metadata(description)
        let tensors = description["tensors"].arrayValue
        let declarations = tensors.map {
            GGUFTensorDeclaration(name: $0["name"].stringValue,
                                  dimensions: $0["dims"].arrayValue.map(\.intValue),
                                  type: GGUFFixtures.type($0["type"].stringValue))
        }
        let out = dir.file("\(name).gguf")
        let writer = try GGUFWriter(path: out, metadata: metadata, tensors: declarations)
        for t in tensors {
            try writer.writeTensor(t["name"].stringValue, values: GGUFFixtures.floats(hex: t["values"].stringValue))
        }
        try writer.finish()
        XCTAssertEqual(try dir.contents(), ["\(name).gguf"], "no temporary file left")
        return ([UInt8](try Data(contentsOf: URL(fileURLWithPath: out))), [UInt8](try GGUFFixtures.data("\(name).gguf")))
    }

    func testRewritesGGUFPyBasicFileByteForByte() throws {
        let (written, original) = try rewrite("basic")
        XCTAssertEqual(written.count, original.count)
        if let i = zip(written, original).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
            XCTFail("first difference at byte \(i)")
        }
        XCTAssertEqual(written, original)
    }

    func testRewritesGGUFPyFileWithAlignment64ByteForByte() throws {
        let (written, original) = try rewrite("aligned64")
        XCTAssertEqual(written, original)
    }

    func testRoundTripThroughTheReader() throws {
        var metadata: GGUFMetadata = ["general.architecture": .string("gemma"),
                                      "gemma.block_count": .uint32(18),
                                      "tokenizer.ggml.tokens": .array(.string(["<pad>", "<eos>", "<bos>"]))]
        metadata["gemma.attention.layer_norm_rms_epsilon"] = .float32(1e-6)
        metadata["gemma.block_count"] = .uint32(28)  // replaces in place
        XCTAssertEqual(metadata.keys, ["general.architecture", "gemma.block_count", "tokenizer.ggml.tokens",
                                       "gemma.attention.layer_norm_rms_epsilon"])
        let big = (0 ..< 64 * 1024).map { Float($0 % 97) * 0.01 - 0.4 }  // 2.1 MB as F32: bypasses the buffer
        let tensors = [
            GGUFTensorDeclaration(name: "token_embd.weight", dimensions: [64, 1024], type: .q8_0),
            GGUFTensorDeclaration(name: "output_norm.weight", dimensions: [64], type: .f32),
            GGUFTensorDeclaration(name: "big", dimensions: [1024, 64], type: .f32),
            GGUFTensorDeclaration(name: "pieces", dimensions: [32, 3], type: .q4_0),
        ]
        let path = dir.file("model.gguf")
        let writer = try GGUFWriter(path: path, metadata: metadata, tensors: tensors)
        XCTAssertEqual(writer.tensors.map(\.offset), [0, 69632, 69888, 332032])
        try writer.writeTensor("token_embd.weight", values: big)
        try writer.writeTensor("output_norm.weight", values: Array(big[..<64]))
        try writer.writeTensor("big", values: big)
        let pieces = try GGMLType.q4_0.encode(Array(big[..<96]))
        for k in 0 ..< 3 {
            XCTAssertEqual(writer.nextTensorInfo?.name, "pieces")
            try writer.appendTensorBytes("pieces", bytes: Array(pieces[k * 18 ..< (k + 1) * 18]).span.bytes)
        }
        XCTAssertNil(writer.nextTensorInfo)
        try writer.finish()

        let file = try GGUFFile(path: path)
        XCTAssertEqual(file.metadata, metadata)
        XCTAssertEqual(try file.int("gemma.block_count"), 28)
        XCTAssertEqual(file.tensors, writer.tensors)
        XCTAssertEqual(try file.bytes(of: file.tensor(named: "token_embd.weight")), try GGMLType.q8_0.encode(big))
        XCTAssertEqual(try file.floats(of: file.tensor(named: "big")), big)
        XCTAssertEqual(try file.bytes(of: file.tensor(named: "pieces")), pieces)
        XCTAssertEqual(file.fileSize % 32, 0)
        XCTAssertEqual(try dir.contents(), ["model.gguf"])
        assertWriteError(try writer.writeTensor("big", values: big)) { $0 == .notWritable(state: "finished") }
    }

    func testAbortRemovesTheTemporaryFile() throws {
        let writer = try GGUFWriter(path: dir.file("a.gguf"), metadata: ["k": .bool(true)],
                                    tensors: [GGUFTensorDeclaration(name: "t", dimensions: [32], type: .f32)])
        XCTAssertEqual(try dir.contents().count, 1, "the temporary file exists while writing")
        XCTAssertTrue(try dir.contents()[0].hasPrefix(".a.gguf."))
        try writer.writeTensor("t", values: [Float](repeating: 1, count: 32))
        writer.abort()
        XCTAssertEqual(try dir.contents(), [])
        writer.abort()  // idempotent
        assertWriteError(try writer.finish()) { $0 == .notWritable(state: "been aborted") }
        XCTAssertEqual(try dir.contents(), [])
    }

    func testReleasingAnUnfinishedWriterRemovesTheTemporaryFile() throws {
        do {
            let writer = try GGUFWriter(path: dir.file("b.gguf"), metadata: [:],
                                        tensors: [GGUFTensorDeclaration(name: "t", dimensions: [32], type: .f16)])
            try writer.writeTensor("t", values: [Float](repeating: 1, count: 32))
            XCTAssertEqual(try dir.contents().count, 1)
        }
        XCTAssertEqual(try dir.contents(), [])
    }

    func testWrongSizeOrOrderFailsAndCleansUp() throws {
        let tensors = [GGUFTensorDeclaration(name: "a", dimensions: [32, 2], type: .q8_0),
                       GGUFTensorDeclaration(name: "b", dimensions: [4], type: .f32)]
        let w1 = try GGUFWriter(path: dir.file("c.gguf"), metadata: [:], tensors: tensors)
        let e1 = assertWriteError(try w1.writeTensor("a", bytes: [UInt8](repeating: 0, count: 67))) {
            $0 == .wrongByteCount(tensor: "a", expected: 68, got: 67)
        }
        XCTAssertTrue(e1?.description.contains("'a'") == true && e1?.description.contains("68") == true)
        XCTAssertEqual(try dir.contents(), [])
        assertWriteError(try w1.writeTensor("a", bytes: [UInt8](repeating: 0, count: 68))) { $0 == .notWritable(state: "failed earlier") }

        let w2 = try GGUFWriter(path: dir.file("c.gguf"), metadata: [:], tensors: tensors)
        assertWriteError(try w2.writeTensor("b", values: [1, 2, 3, 4])) { $0 == .unexpectedTensor(expected: "a", got: "b") }
        XCTAssertEqual(try dir.contents(), [])

        let w3 = try GGUFWriter(path: dir.file("c.gguf"), metadata: [:], tensors: tensors)
        try w3.appendTensorBytes("a", bytes: [UInt8](repeating: 0, count: 60).span.bytes)
        assertWriteError(try w3.appendTensorBytes("a", bytes: [UInt8](repeating: 0, count: 9).span.bytes)) {
            $0 == .wrongByteCount(tensor: "a", expected: 68, got: 69)
        }
        XCTAssertEqual(try dir.contents(), [])

        let w4 = try GGUFWriter(path: dir.file("c.gguf"), metadata: [:], tensors: tensors)
        try w4.writeTensor("a", bytes: [UInt8](repeating: 0, count: 68))
        assertWriteError(try w4.finish()) { $0 == .tensorsNotWritten(["b"]) }
        XCTAssertEqual(try dir.contents(), [])

        let w5 = try GGUFWriter(path: dir.file("c.gguf"), metadata: [:], tensors: tensors)
        assertWriteError(try w5.writeTensor("a", values: [1, 2])) { $0 == .wrongElementCount(tensor: "a", expected: 64, got: 2) }
        XCTAssertEqual(try dir.contents(), [])
    }

    func testMissingDirectoryIsNamed() {
        let path = dir.file("no/such/dir/model.gguf")
        let e = assertWriteError(try GGUFWriter(path: path, metadata: [:], tensors: [])) {
            $0 == .directoryMissing(self.dir.file("no/such/dir"))
        }
        XCTAssertTrue(e?.description.contains("does not exist") == true)
        XCTAssertTrue(e?.description.contains(dir.file("no/such/dir")) == true)
        XCTAssertTrue(FileManager.default.createFile(atPath: dir.file("plain"), contents: Data()))
        assertWriteError(try GGUFWriter(path: dir.file("plain/model.gguf"), metadata: [:], tensors: [])) {
            $0 == .notADirectory(self.dir.file("plain"))
        }
        XCTAssertEqual(try dir.contents(), ["plain"])
    }

    func testInvalidDeclarationsAreRejectedBeforeAnythingIsCreated() {
        func attempt(_ tensors: [GGUFTensorDeclaration], metadata: GGUFMetadata = [:]) throws {
            _ = try GGUFWriter(path: dir.file("d.gguf"), metadata: metadata, tensors: tensors)
        }
        assertWriteError(try attempt([GGUFTensorDeclaration(name: "q", dimensions: [33], type: .q8_0)])) {
            $0 == .rowNotMultipleOfBlock(tensor: "q", rowLength: 33, type: .q8_0)
        }
        assertWriteError(try attempt([GGUFTensorDeclaration(name: "x", dimensions: [1, 1, 1, 1, 1], type: .f32)])) {
            $0 == .invalidDimensions(tensor: "x", dimensions: [1, 1, 1, 1, 1])
        }
        assertWriteError(try attempt([GGUFTensorDeclaration(name: "x", dimensions: [-1], type: .f32)])) {
            $0 == .invalidDimensions(tensor: "x", dimensions: [-1])
        }
        assertWriteError(try attempt([GGUFTensorDeclaration(name: "x", dimensions: [4], type: .f32),
                                      GGUFTensorDeclaration(name: "x", dimensions: [4], type: .f32)])) {
            if case .invalidTensorName("x", _) = $0 { return true }
            return false
        }
        assertWriteError(try attempt([GGUFTensorDeclaration(name: String(repeating: "n", count: 64), dimensions: [4], type: .f32)])) {
            if case .invalidTensorName = $0 { return true }
            return false
        }
        assertWriteError(try attempt([], metadata: ["general.alignment": .uint64(32)])) { if case .invalidAlignment = $0 { return true }; return false }
        assertWriteError(try attempt([], metadata: ["general.alignment": .uint32(24)])) { if case .invalidAlignment = $0 { return true }; return false }
        assertWriteError(try attempt([], metadata: ["": .uint32(24)])) { $0 == .invalidKey("") }
        XCTAssertEqual(try dir.contents(), [])
    }

    #if canImport(Glibc)
    /// A write that fails (here: the file size limit, EFBIG, standing in for a full disk)
    /// reports the system's message and removes the temporary file.
    func testFailedWriteRemovesTheTemporaryFile() throws {
        var old = rlimit()
        XCTAssertEqual(getrlimit(Int32(RLIMIT_FSIZE.rawValue), &old), 0)
        let oldHandler = signal(SIGXFSZ, SIG_IGN)
        var limited = old
        limited.rlim_cur = 1 << 20
        XCTAssertEqual(setrlimit(Int32(RLIMIT_FSIZE.rawValue), &limited), 0)
        defer {
            _ = setrlimit(Int32(RLIMIT_FSIZE.rawValue), &old)
            signal(SIGXFSZ, oldHandler)
        }
        let writer = try GGUFWriter(path: dir.file("e.gguf"), metadata: [:],
                                    tensors: [GGUFTensorDeclaration(name: "huge", dimensions: [1 << 20], type: .f32)])
        let e = assertWriteError(try writer.writeTensor("huge", bytes: [UInt8](repeating: 1, count: 4 << 20))) {
            if case .writeFailed(_, reason: let reason) = $0 { return reason.contains("too large") }
            return false
        }
        XCTAssertTrue(e?.description.contains(dir.file("e.gguf")) == true)
        XCTAssertEqual(try dir.contents(), [])
    }
    #endif

    func testEmptyFileWithoutTensorsMatchesTheReader() throws {
        let path = dir.file("empty.gguf")
        let writer = try GGUFWriter(path: path, metadata: ["general.architecture": .string("x")], tensors: [])
        try writer.finish()
        let file = try GGUFFile(path: path)
        XCTAssertEqual(try file.string("general.architecture"), "x")
        XCTAssertEqual(file.fileSize % 32, 0)
    }
}
