import Foundation
import GemmaModel
import XCTest

/// Every way a checkpoint can be broken gives an error that names the file and the tensor
/// or field, never a crash.
final class CheckpointErrorTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = try Fixtures.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// Writes a safetensors file from a header object and raw data.
    func writeSafetensors(_ name: String, header: [String: Any], data: Data) throws -> String {
        let json = try JSONSerialization.data(withJSONObject: header)
        var bytes = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(json)
        bytes.append(data)
        let path = directory.appendingPathComponent(name).path
        try bytes.write(to: URL(fileURLWithPath: path))
        return path
    }

    /// A copy of a fixture model in the temporary directory.
    func copyOfFixture(_ name: String) throws -> URL {
        let target = directory.appendingPathComponent(name)
        try FileManager.default.copyItem(atPath: Fixtures.model(name), toPath: target.path)
        return target
    }

    func editJSON(_ url: URL, _ edit: (inout [String: Any]) -> Void) throws {
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: url)
    }

    func assertError(_ expression: @autoclosure () throws -> Any, _ expected: CheckpointError,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try expression(), file: file, line: line) { error in
            XCTAssertEqual(error as? CheckpointError, expected, file: file, line: line)
        }
    }

    func testTruncatedHeaderLength() throws {
        let path = directory.appendingPathComponent("short.safetensors").path
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        assertError(try SafetensorsFile(path: path), .truncated(file: path, detail: "3 bytes, less than the 8-byte header length"))
    }

    func testTruncatedHeader() throws {
        let path = try writeSafetensors("cut.safetensors", header: ["a": ["dtype": "F32", "shape": [2], "data_offsets": [0, 8]]], data: Data(count: 8))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try bytes.prefix(20).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try SafetensorsFile(path: path)) { error in
            guard case let .truncated(file, _)? = error as? CheckpointError else { return XCTFail("\(error)") }
            XCTAssertEqual(file, path)
        }
    }

    func testTruncatedData() throws {
        let path = try writeSafetensors("data.safetensors", header: ["w": ["dtype": "F32", "shape": [4], "data_offsets": [0, 16]]], data: Data(count: 10))
        assertError(try SafetensorsFile(path: path),
                    .offsetsOutOfRange(file: path, tensor: "w", detail: "[0, 16) but the data section has 10 bytes"))
    }

    func testBadHeaderJSON() throws {
        var bytes = Data()
        withUnsafeBytes(of: UInt64(5).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(Data("{oops".utf8))
        let path = directory.appendingPathComponent("json.safetensors").path
        try bytes.write(to: URL(fileURLWithPath: path))
        assertError(try SafetensorsFile(path: path), .badHeader(file: path, detail: "header is not valid JSON"))
    }

    func testHugeHeaderLength() throws {
        var bytes = Data()
        withUnsafeBytes(of: UInt64.max.littleEndian) { bytes.append(contentsOf: $0) }
        let path = directory.appendingPathComponent("huge.safetensors").path
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try SafetensorsFile(path: path)) { error in
            guard case .badHeader(path, _)? = error as? CheckpointError else { return XCTFail("\(error)") }
        }
    }

    func testSizeDisagreesWithShape() throws {
        let path = try writeSafetensors("size.safetensors", header: ["w": ["dtype": "BF16", "shape": [3], "data_offsets": [0, 8]]], data: Data(count: 8))
        assertError(try SafetensorsFile(path: path),
                    .offsetsOutOfRange(file: path, tensor: "w", detail: "[0, 8) holds 8 bytes but shape [3] of BF16 needs 6"))
    }

    func testOverlappingTensors() throws {
        let path = try writeSafetensors("overlap.safetensors", header: [
            "a": ["dtype": "F32", "shape": [2], "data_offsets": [0, 8]],
            "b": ["dtype": "F32", "shape": [2], "data_offsets": [4, 12]],
        ], data: Data(count: 12))
        assertError(try SafetensorsFile(path: path), .overlappingTensors(file: path, tensor: "b", other: "a"))
    }

    func testUnsupportedDType() throws {
        let path = try writeSafetensors("int.safetensors", header: ["ids": ["dtype": "I64", "shape": [1], "data_offsets": [0, 8]]], data: Data(count: 8))
        assertError(try SafetensorsFile(path: path), .unsupportedDType(file: path, tensor: "ids", dtype: "I64"))
    }

    func testShapeNotWhatTheConfigImplies() throws {
        let model = try copyOfFixture("tiny-mha")
        try editJSON(model.appendingPathComponent("config.json")) { $0["intermediate_size"] = 100 }
        let file = model.appendingPathComponent("model.safetensors").path
        assertError(try GemmaTransformer(source: SafetensorsCheckpoint(directory: model.path)),
                    .shapeMismatch(file: file, tensor: "model.layers.0.mlp.gate_proj.weight", found: [96, 48], expected: [100, 48]))
    }

    func testDTypeNotWhatTheConfigSays() throws {
        let model = try copyOfFixture("tiny-mha")
        try editJSON(model.appendingPathComponent("config.json")) { $0["dtype"] = "bfloat16" }
        let file = model.appendingPathComponent("model.safetensors").path
        assertError(try GemmaTransformer(source: SafetensorsCheckpoint(directory: model.path)),
                    .dtypeMismatch(file: file, tensor: "model.embed_tokens.weight", found: "F32", expected: "BF16"))
    }

    func testMissingTensor() throws {
        let model = try copyOfFixture("tiny-mqa")
        try editJSON(model.appendingPathComponent("model.safetensors.index.json")) { json in
            var map = json["weight_map"] as! [String: String]
            map["model.layers.1.mlp.up_proj.weight"] = nil
            json["weight_map"] = map
        }
        assertError(try GemmaTransformer(source: SafetensorsCheckpoint(directory: model.path)),
                    .missingTensor(tensor: "model.layers.1.mlp.up_proj.weight", searched: model.path))
    }

    func testIndexNamesAMissingShard() throws {
        let model = try copyOfFixture("tiny-mqa")
        let shard = model.appendingPathComponent("model-00002-of-00007.safetensors")
        try FileManager.default.removeItem(at: shard)
        assertError(try SafetensorsCheckpoint(directory: model.path),
                    .unreadable(file: shard.path, reason: "No such file or directory"))
    }

    func testNoWeights() throws {
        let model = try copyOfFixture("tiny-mha")
        try FileManager.default.removeItem(at: model.appendingPathComponent("model.safetensors"))
        assertError(try SafetensorsCheckpoint(directory: model.path), .noWeights(directory: model.path))
    }

    func testMissingConfigFieldIsNamed() throws {
        let model = try copyOfFixture("tiny-mha")
        let config = model.appendingPathComponent("config.json")
        try editJSON(config) { $0["head_dim"] = nil }
        assertError(try SafetensorsCheckpoint(directory: model.path), .missingConfigField(file: config.path, field: "head_dim"))
    }

    func testInconsistentConfigIsNamed() throws {
        let model = try copyOfFixture("tiny-mha")
        let config = model.appendingPathComponent("config.json")
        try editJSON(config) { $0["num_key_value_heads"] = 3 }
        assertError(try SafetensorsCheckpoint(directory: model.path),
                    .invalidConfigField(file: config.path, field: "num_key_value_heads", detail: "3 does not divide num_attention_heads 4"))
        try editJSON(config) { $0["num_key_value_heads"] = 4; $0["model_type"] = "llama" }
        assertError(try SafetensorsCheckpoint(directory: model.path),
                    .invalidConfigField(file: config.path, field: "model_type", detail: "'llama' is not a Gemma v1 model (expected 'gemma')"))
        try editJSON(config) { $0["model_type"] = "gemma"; $0["hidden_size"] = "48" }
        assertError(try SafetensorsCheckpoint(directory: model.path),
                    .invalidConfigField(file: config.path, field: "hidden_size", detail: "expected a positive integer, found 48"))
    }

    func testGarbageFilesNeverCrash() throws {
        // Random bytes behind a plausible header length.
        var generator = SystemRandomNumberGenerator()
        for size in [8, 9, 64, 1000] {
            var bytes = Data((0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) })
            bytes.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(size - 8).littleEndian) { Data($0) })
            let path = directory.appendingPathComponent("garbage-\(size).safetensors").path
            try bytes.write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try SafetensorsFile(path: path))
        }
    }
}
