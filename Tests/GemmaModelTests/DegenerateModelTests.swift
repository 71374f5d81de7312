import Foundation
import GemmaModel
import GemmaQuant
import XCTest

/// Degenerate model files (sizes past Int.max, absurd counts, reversed offsets) give an error
/// naming the file and the tensor or field, never a trap or a wrapped size.
final class DegenerateModelTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws { directory = try Fixtures.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    /// A safetensors file whose header is `json` as written (so numbers past Int64 can appear).
    func safetensors(_ name: String, headerLength: UInt64? = nil, json: String, dataBytes: Int = 16) throws -> String {
        var bytes = Data()
        let header = Data(json.utf8)
        withUnsafeBytes(of: (headerLength ?? UInt64(header.count)).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(header)
        bytes.append(Data(count: dataBytes))
        let path = directory.appendingPathComponent(name).path
        try bytes.write(to: URL(fileURLWithPath: path))
        return path
    }

    func assertNamed(_ expression: @autoclosure () throws -> Any, _ names: [String], line: UInt = #line) {
        XCTAssertThrowsError(try expression(), line: line) { error in
            XCTAssertNotNil(error as? CheckpointError, "\(error)", line: line)
            for name in names {
                XCTAssertTrue("\(error)".contains(name), "'\(error)' does not name \(name)", line: line)
            }
        }
    }

    func testSafetensorsHeaderLengthOf2To63() throws {
        let path = try safetensors("h.safetensors", headerLength: 1 << 63, json: "{}")
        assertNamed(try SafetensorsFile(path: path), [path, "header length 9223372036854775808"])
        let max = try safetensors("m.safetensors", headerLength: UInt64.max, json: "{}")
        assertNamed(try SafetensorsFile(path: max), [max, "header length"])
    }

    func testSafetensorsShapeProductOverflowing() throws {
        let product = try safetensors("p.safetensors", json: #"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}}"#)
        assertNamed(try SafetensorsFile(path: product), [product, "'w'", "too large"])
        // 2^62 elements fit, their 2^64 bytes do not.
        let bytes = try safetensors("b.safetensors", json: #"{"emb":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,16]}}"#)
        assertNamed(try SafetensorsFile(path: bytes), [bytes, "'emb'", "too large"])
        let past = try safetensors("n.safetensors", json: #"{"w":{"dtype":"BF16","shape":[18446744073709551616],"data_offsets":[0,16]}}"#)
        assertNamed(try SafetensorsFile(path: past), [past, "'w'", "shape"])
    }

    func testSafetensorsDataOffsetsReversedOrOverflowing() throws {
        let reversed = try safetensors("r.safetensors", json: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#)
        XCTAssertThrowsError(try SafetensorsFile(path: reversed)) {
            XCTAssertEqual($0 as? CheckpointError, .offsetsOutOfRange(file: reversed, tensor: "w", detail: "[8, 0) ends before it begins"))
        }
        let maxEnd = try safetensors("e.safetensors", json: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[9223372036854775800,9223372036854775807]}}"#)
        assertNamed(try SafetensorsFile(path: maxEnd), [maxEnd, "'w'", "data section has 16 bytes"])
        let wrapped = try safetensors("w.safetensors", json: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}}"#)
        assertNamed(try SafetensorsFile(path: wrapped), [wrapped, "'w'", "data_offsets"])
        let negative = try safetensors("neg.safetensors", json: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}"#)
        assertNamed(try SafetensorsFile(path: negative), [negative, "'w'", "data_offsets"])
    }

    /// A checkpoint folder whose config.json is tiny-mha's with `edit` applied.
    func checkpoint(_ edit: (inout [String: Any]) -> Void) throws -> (String, String) {
        let model = directory.appendingPathComponent("model-\(UUID().uuidString)")
        try FileManager.default.copyItem(atPath: Fixtures.model("tiny-mha"), toPath: model.path)
        let config = model.appendingPathComponent("config.json")
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: config)) as! [String: Any]
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: config)
        return (model.path, config.path)
    }

    func testConfigsWithAbsurdSizesNameTheField() throws {
        let cases: [(String, Any)] = [
            ("head_dim", 1 << 40), ("head_dim", Int.max), ("vocab_size", 1 << 40), ("num_hidden_layers", 1 << 31),
            ("num_attention_heads", 1 << 20), ("num_key_value_heads", Int.max), ("hidden_size", 1 << 30),
            ("intermediate_size", 1 << 40), ("max_position_embeddings", Int.max), ("head_dim", 0), ("vocab_size", -1),
        ]
        for (field, value) in cases {
            let (model, config) = try checkpoint { $0[field] = value }
            assertNamed(try SafetensorsCheckpoint(directory: model), [config, "'\(field)'"])
        }
    }

    /// A GGUF file with the `gemma.*` keys of a tiny model (changed by `edit`) and a token embedding.
    func gguf(_ name: String, embedding: [Int] = [8, 4], _ edit: (inout GGUFMetadata) -> Void) throws -> String {
        var metadata: GGUFMetadata = [
            "general.architecture": .string("gemma"), "gemma.embedding_length": .uint32(8),
            "gemma.attention.head_count": .uint32(2), "gemma.attention.head_count_kv": .uint32(1),
            "gemma.attention.key_length": .uint32(4), "gemma.feed_forward_length": .uint32(16),
            "gemma.block_count": .uint32(1), "gemma.context_length": .uint32(64),
            "gemma.attention.layer_norm_rms_epsilon": .float32(1e-6),
        ]
        edit(&metadata)
        let path = directory.appendingPathComponent(name).path
        let writer = try GGUFWriter(path: path, metadata: metadata,
                                    tensors: [GGUFTensorDeclaration(name: "token_embd.weight", dimensions: embedding, type: .f32)])
        try writer.writeTensor("token_embd.weight", values: [Float](repeating: 0, count: embedding.reduce(1, *)))
        try writer.finish()
        return path
    }

    func testGGUFWithAbsurdOrZeroSizesNamesTheKey() throws {
        XCTAssertNoThrow(try GGUFCheckpoint(path: try gguf("ok.gguf") { _ in }))
        let cases: [(String, GGUFValue)] = [
            ("gemma.attention.key_length", .uint64(1 << 40)), ("gemma.attention.key_length", .uint64(UInt64(Int.max))),
            ("gemma.block_count", .uint32(UInt32.max)), ("gemma.attention.head_count_kv", .int32(-1)),
            ("gemma.context_length", .int64(Int64.max)), ("gemma.feed_forward_length", .uint32(0)),
            ("gemma.attention.layer_norm_rms_epsilon", .float32(.nan)), ("gemma.block_count", .uint64(UInt64.max)),
        ]
        for (index, (key, value)) in cases.enumerated() {
            let path = try gguf("bad-\(index).gguf") { $0[key] = value }
            XCTAssertThrowsError(try GGUFCheckpoint(path: path), key) { error in
                XCTAssertTrue("\(error)".contains(path) && "\(error)".contains(key), "'\(error)' does not name \(key)")
            }
        }
        // A zero or negative head count with no key_length would divide by it.
        for (index, heads) in [GGUFValue.uint32(0), .int32(-1), .int64(Int64.min)].enumerated() {
            let path = try gguf("heads-\(index).gguf") {
                $0["gemma.attention.head_count"] = heads
                $0["gemma.attention.key_length"] = nil
            }
            assertNamed(try GGUFCheckpoint(path: path), [path, "gemma.attention.head_count", "must be positive"])
        }
        let embedding = try gguf("embedding.gguf") { $0["gemma.embedding_length"] = .int64(Int64.min) }
        assertNamed(try GGUFCheckpoint(path: embedding), [embedding, "gemma.embedding_length"])
        // An empty vocabulary, from the embedding's rows (the limit is checked on config.json:
        // a file with 2^22 + 1 rows would take 100 MB).
        let vocabulary = try gguf("vocab.gguf", embedding: [8, 0]) { _ in }
        assertNamed(try GGUFCheckpoint(path: vocabulary), [vocabulary, "token_embd.weight", "must be positive"])
    }
}
