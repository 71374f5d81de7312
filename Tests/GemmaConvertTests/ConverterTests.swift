import Foundation
import GemmaConvert
import GemmaModel
import GemmaQuant
import GemmaTokenizer
import XCTest

/// gemma-quantize's conversion: GGUF that loads in our engine with the same logits, the
/// tokenizer carried in metadata, atomic output, and errors that name the problem.
final class ConverterTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures")
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("gemma-convert-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func model(_ name: String) -> String { Self.fixtures.appendingPathComponent("models/\(name)").path }

    func convert(_ name: String, _ target: QuantizationTarget) throws -> String {
        let output = directory.appendingPathComponent("\(name)-\(target.rawValue).gguf").path
        try GGUFConverter(input: model(name)).convert(to: output, target: target)
        return output
    }

    /// Logits at every position of each reference prompt.
    func logits(_ transformer: GemmaTransformer, _ tokens: [Int32]) throws -> Matrix {
        try transformer.forward(tokens: tokens, startPosition: 0, cache: transformer.makeCache(), allPositions: true)
    }

    func referencePrompts(_ name: String) throws -> [(tokens: [Int32], logits: [Float])] {
        let dir = URL(fileURLWithPath: model(name))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("reference.json"))) as! [String: Any]
        let raw = try Data(contentsOf: dir.appendingPathComponent("reference-logits.f32"))
        let all: [Float] = raw.withUnsafeBytes { b in (0..<raw.count / 4).map { Float(bitPattern: b.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)) } }
        let vocab = json["vocab_size"] as! Int
        return (json["prompts"] as! [[String: Any]]).map { p in
            let tokens = (p["tokens"] as! [Int]).map(Int32.init)
            let offset = p["logits_offset"] as! Int
            return (tokens, Array(all[offset..<offset + tokens.count * vocab]))
        }
    }

    func testFloatGGUFGivesTransformersLogits() throws {
        for (name, target) in [("tiny-mha", QuantizationTarget.f32), ("tiny-gqa", .f32), ("tiny-mqa", .bf16), ("tiny-mqa", .f32)] {
            let path = try convert(name, target)
            let transformer = try LoadedModel(path: path).transformer()
            for prompt in try referencePrompts(name) {
                let ours = try logits(transformer, prompt.tokens)
                let difference = zip(ours.storage, prompt.logits).map { abs($0 - $1) }.max()!
                XCTAssertLessThan(difference, 1e-3, "\(name) as \(target), prompt of \(prompt.tokens.count)")
            }
        }
    }

    func testTensorLayoutFollowsLlamaCpp() throws {
        let file = try GGUFFile(path: try convert("tiny-mqa", .q8_0))
        XCTAssertEqual(try file.string("general.architecture"), "gemma")
        XCTAssertEqual(try file.int("gemma.block_count"), 3)
        XCTAssertEqual(try file.int("gemma.attention.head_count_kv"), 1)
        XCTAssertEqual(try file.int("gemma.attention.key_length"), 16)
        XCTAssertEqual(try file.int("general.file_type"), 7)
        XCTAssertEqual(try file.bool("tokenizer.ggml.add_space_prefix"), false)
        XCTAssertEqual(try file.int("tokenizer.ggml.eot_token_id"), 5)
        XCTAssertEqual(file.alignment, 32)
        let embedding = try file.tensor(named: "token_embd.weight")
        XCTAssertEqual(embedding.dimensions, [64, 1000])  // ggml order
        XCTAssertEqual(embedding.type, .q8_0)
        XCTAssertEqual(try file.tensor(named: "blk.2.attn_norm.weight").type, .f32)
        XCTAssertFalse(file.hasTensor(named: "output.weight"))
        // Norms are stored as 1 + w.
        let checkpoint = try SafetensorsCheckpoint(directory: model("tiny-mqa"))
        let w = try checkpoint.loadFloat32("model.layers.2.input_layernorm.weight", shape: [64])
        XCTAssertEqual(try file.floats(of: file.tensor(named: "blk.2.attn_norm.weight")), w.map { 1 + $0 })
    }

    func testRowsThatAreNotWholeBlocksFallBackToF16() throws {
        let file = try GGUFFile(path: try convert("tiny-mha", .q8_0))   // hidden 48: rows of 48
        XCTAssertEqual(try file.tensor(named: "blk.0.attn_q.weight").type, .f16)
        XCTAssertEqual(try file.tensor(named: "blk.0.ffn_down.weight").type, .q8_0)  // rows of 96
    }

    func testTokenizerRebuiltFromMetadataEncodesLikeTheOriginal() throws {
        let loaded = try LoadedModel(path: try convert("tiny-mqa", .q4_0))
        let original = try GemmaTokenizer(contentsOf: model("tiny-mqa") + "/tokenizer.model")
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.fixtures.appendingPathComponent("tokenizer/expected.json"))) as! [String: Any]
        for item in expected["encode"] as! [[String: Any]] {
            let text = item["text"] as! String
            XCTAssertEqual(loaded.tokenizer.encode(text, addBOS: true), original.encode(text, addBOS: true), text)
        }
        XCTAssertEqual(loaded.tokenizer.stopTokens, original.stopTokens)
        XCTAssertEqual(try loaded.tokenizer.encodeChat([ChatMessage(role: .user, content: "Hi")], addGenerationPrompt: true),
                       try original.encodeChat([ChatMessage(role: .user, content: "Hi")], addGenerationPrompt: true))
    }

    func testRequantizingAFloatGGUFGivesTheSameFileAsConvertingTheCheckpoint() throws {
        let direct = try convert("tiny-mqa", .q8_0)
        let viaFloat = directory.appendingPathComponent("via-f32.gguf").path
        try GGUFConverter(input: try convert("tiny-mqa", .f32)).convert(to: viaFloat, target: .q8_0)
        let a = try GGUFFile(path: direct), b = try GGUFFile(path: viaFloat)
        XCTAssertEqual(a.tensors.map(\.name), b.tensors.map(\.name))
        for (x, y) in zip(a.tensors, b.tensors) {
            XCTAssertEqual(try a.bytes(of: x), try b.bytes(of: y), x.name)
        }
    }

    func testLayerRangeLoadsOnlyItsShare() throws {
        let path = try convert("tiny-mqa", .q8_0)
        let whole = try LoadedModel(path: path).transformer()
        let middle = try LoadedModel(path: path).transformer(layers: 1..<2)
        XCTAssertFalse(middle.isFirstStage || middle.isLastStage)
        XCTAssertLessThan(middle.weightBytes * 3, whole.weightBytes)
    }

    // MARK: errors

    func assertConversionError(_ body: () throws -> Void, contains fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            for fragment in fragments {
                XCTAssertTrue("\(error)".contains(fragment), "'\(error)' does not mention '\(fragment)'", file: file, line: line)
            }
        }
    }

    func testQuantizedInputIsRefused() throws {
        let quantized = try convert("tiny-mqa", .q8_0)
        assertConversionError({ try GGUFConverter(input: quantized) }, contains: [quantized, "token_embd.weight", "Q8_0"])
    }

    func testNotAGemmaCheckpoint() throws {
        let config = directory.appendingPathComponent("llama")
        try FileManager.default.copyItem(atPath: model("tiny-mha"), toPath: config.path)
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: config.appendingPathComponent("config.json"))) as! [String: Any]
        json["model_type"] = "llama"
        try JSONSerialization.data(withJSONObject: json).write(to: config.appendingPathComponent("config.json"))
        assertConversionError({ try GGUFConverter(input: config.path) }, contains: ["model_type", "llama"])
        let garbage = directory.appendingPathComponent("garbage.gguf")
        try Data("GGUF but not really".utf8).write(to: garbage)
        assertConversionError({ try GGUFConverter(input: garbage.path) }, contains: [garbage.path])
    }

    func testMissingAndMisshapenTensors() throws {
        let broken = directory.appendingPathComponent("broken")
        try FileManager.default.copyItem(atPath: model("tiny-mqa"), toPath: broken.path)
        let index = broken.appendingPathComponent("model.safetensors.index.json")
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: index)) as! [String: Any]
        var map = json["weight_map"] as! [String: String]
        map["model.layers.2.mlp.down_proj.weight"] = nil
        json["weight_map"] = map
        try JSONSerialization.data(withJSONObject: json).write(to: index)
        let output = directory.appendingPathComponent("out.gguf").path
        assertConversionError({ try GGUFConverter(input: broken.path).convert(to: output, target: .q8_0) },
                              contains: ["model.layers.2.mlp.down_proj.weight"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: output), "no partial output")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("out") }, [])

        let misshapen = directory.appendingPathComponent("misshapen")
        try FileManager.default.copyItem(atPath: model("tiny-mha"), toPath: misshapen.path)
        let configURL = misshapen.appendingPathComponent("config.json")
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as! [String: Any]
        config["intermediate_size"] = 64
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        assertConversionError({ try GGUFConverter(input: misshapen.path).convert(to: output, target: .q8_0) },
                              contains: ["mlp.down_proj.weight", "[48, 96]", "[48, 64]"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: output))
    }

    func testTruncatedInputAndMissingTokenizer() throws {
        let truncated = directory.appendingPathComponent("truncated")
        try FileManager.default.copyItem(atPath: model("tiny-mha"), toPath: truncated.path)
        let weights = truncated.appendingPathComponent("model.safetensors")
        let bytes = try Data(contentsOf: weights)
        try bytes.prefix(bytes.count / 2).write(to: weights)
        assertConversionError({ try GGUFConverter(input: truncated.path) }, contains: [weights.path])

        let noTokenizer = directory.appendingPathComponent("no-tokenizer")
        try FileManager.default.copyItem(atPath: model("tiny-mha"), toPath: noTokenizer.path)
        try FileManager.default.removeItem(at: noTokenizer.appendingPathComponent("tokenizer.model"))
        assertConversionError({ try GGUFConverter(input: noTokenizer.path) }, contains: ["tokenizer.model", noTokenizer.path])
    }

    func testOutputDirectoryMissing() throws {
        let output = directory.appendingPathComponent("nowhere/out.gguf").path
        assertConversionError({ try GGUFConverter(input: model("tiny-mha")).convert(to: output, target: .q8_0) },
                              contains: [output])
    }

    func testCancelledConversionLeavesNothing() throws {
        let output = directory.appendingPathComponent("cancelled.gguf").path
        var calls = 0
        assertConversionError({
            try GGUFConverter(input: model("tiny-mqa")).convert(to: output, target: .q4_0, isCancelled: {
                calls += 1
                return calls > 5
            })
        }, contains: ["cancelled"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), [])
    }

    func testDiskFullIsAClearErrorAndLeavesNothing() throws {
        // A 64 KiB tmpfs: needs root and mount; skipped where the machine does not allow it.
        let mountPoint = directory.appendingPathComponent("small")
        try FileManager.default.createDirectory(at: mountPoint, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mountPoint.path]
        mount.standardError = FileHandle.nullDevice
        guard (try? mount.run()) != nil else { throw XCTSkip("cannot run mount") }
        mount.waitUntilExit()
        guard mount.terminationStatus == 0 else { throw XCTSkip("cannot mount a tmpfs here (not root?)") }
        defer {
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = [mountPoint.path]
            try? umount.run()
            umount.waitUntilExit()
        }
        let output = mountPoint.appendingPathComponent("full.gguf").path
        assertConversionError({ try GGUFConverter(input: model("tiny-mqa")).convert(to: output, target: .f32) },
                              contains: [output])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: mountPoint.path), [])
    }
}
