import Foundation
import GemmaConvert
import GemmaModel
import GemmaQuant
import GemmaTokenizer
import XCTest

/// Our GGUF against what others wrote: tensor bytes against the `gguf` Python package's
/// quantizers, and llama.cpp's own converter's files loaded by our engine.
final class ReferenceGGUFTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures")
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("gemma-ref-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    static func fnv1a64(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return String(format: "%016llx", hash)
    }

    func testQuantizedTensorsAreByteIdenticalToTheGGUFPackage() throws {
        let url = Self.fixtures.appendingPathComponent("gguf/quant-reference.json")
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let models = reference["models"] as! [String: [String: [String: [String: Any]]]]
        var compared = 0
        for (name, tensors) in models {
            for target in [QuantizationTarget.q8_0, .q4_0] {
                let output = directory.appendingPathComponent("\(name)-\(target.rawValue).gguf").path
                try GGUFConverter(input: Self.fixtures.appendingPathComponent("models/\(name)").path).convert(to: output, target: target)
                let file = try GGUFFile(path: output)
                for info in file.tensors {
                    let key = info.type == .f32 ? "F32" : info.type.name
                    guard let expected = tensors[info.name]?[key] else { continue }
                    let bytes = try file.bytes(of: info)
                    XCTAssertEqual(bytes.count, expected["bytes"] as? Int, "\(name) \(info.name) \(key)")
                    XCTAssertEqual(Self.fnv1a64(bytes), expected["fnv1a64"] as? String, "\(name) \(info.name) \(key)")
                    compared += 1
                }
            }
        }
        XCTAssertGreaterThan(compared, 40)
    }

    /// llama.cpp's `convert_hf_to_gguf.py` output (Tests/Fixtures/llamacpp) loads in our engine.
    func llamaCppFile(_ name: String) throws -> String {
        let path = Self.fixtures.appendingPathComponent("llamacpp/\(name).gguf").path
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("no fixture \(path)") }
        return path
    }

    /// (llama.cpp's Gemma converter writes no `gemma.rope.freq_base`, so a checkpoint with a
    /// rope theta other than Gemma's 10000, like tiny-mha's 5000, loses it there: compared on
    /// tiny-gqa, whose theta is 10000.)
    func testLlamaCppFloatFilesGiveTheSameLogitsAsOurs() throws {
        for (model, type) in [("tiny-gqa", QuantizationTarget.f32), ("tiny-gqa", .f16), ("tiny-mqa", .f32)] {
            let theirs = try LoadedModel(path: try llamaCppFile("\(model)-\(type.rawValue)")).transformer()
            let ourPath = directory.appendingPathComponent("\(model)-\(type.rawValue).gguf").path
            try GGUFConverter(input: Self.fixtures.appendingPathComponent("models/\(model)").path).convert(to: ourPath, target: type)
            let ours = try LoadedModel(path: ourPath).transformer()
            let tokens: [Int32] = [2, 17, 301, 44, 999, 5, 600, 12, 13, 14]
            let a = try theirs.forward(tokens: tokens, startPosition: 0, cache: theirs.makeCache(), allPositions: true)
            let b = try ours.forward(tokens: tokens, startPosition: 0, cache: ours.makeCache(), allPositions: true)
            let difference = zip(a.storage, b.storage).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(difference, 1e-3, "\(model) \(type)")
        }
    }

    func testLlamaCppQ8FileHasOurMatrixBytes() throws {
        let theirs = try GGUFFile(path: try llamaCppFile("tiny-mqa-q8_0"))
        let ourPath = directory.appendingPathComponent("ours.gguf").path
        try GGUFConverter(input: Self.fixtures.appendingPathComponent("models/tiny-mqa").path).convert(to: ourPath, target: .q8_0)
        let ours = try GGUFFile(path: ourPath)
        for info in ours.tensors where info.type == .q8_0 {
            XCTAssertEqual(try theirs.bytes(of: theirs.tensor(named: info.name)), try ours.bytes(of: info), info.name)
        }
        // And it runs: greedy continuation equal to ours.
        let a = try LoadedModel(path: theirs.path), b = try LoadedModel(path: ourPath)
        let request = GenerationRequest(prompt: [2, 17, 301], maxTokens: 8)
        XCTAssertEqual(try Generator(model: a.transformer()).generate(request).tokens,
                       try Generator(model: b.transformer()).generate(request).tokens)
    }

    func testTokenizerFromLlamaCppMetadataEncodesChatMarkers() throws {
        let loaded = try LoadedModel(path: try llamaCppFile("tiny-gqa-f32"))
        let original = try GemmaTokenizer(contentsOf: Self.fixtures.appendingPathComponent("tokenizer/test-tokenizer.model").path)
        for text in ["<start_of_turn>user\nHi there<end_of_turn>\n", "plain 123 text", "caf\u{e9} \u{1F642}"] {
            XCTAssertEqual(loaded.tokenizer.encode(text, addBOS: true), original.encode(text, addBOS: true), text)
        }
        XCTAssertEqual(loaded.tokenizer.endOfTurn, 5)
    }
}
