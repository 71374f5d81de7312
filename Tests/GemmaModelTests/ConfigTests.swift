import GemmaModel
import XCTest

/// config.json in the 2024 and the current spelling.
final class ConfigTests: XCTestCase {
    func test2024Spelling() throws {
        let config = try SafetensorsCheckpoint(directory: Fixtures.model("tiny-mqa")).config
        XCTAssertEqual(config.ropeTheta, 10_000)
        XCTAssertEqual(config.activation, .geluTanh)  // hidden_act "gelu" means the tanh form
        XCTAssertEqual(config.declaredDType, .bf16)    // torch_dtype
        XCTAssertEqual(config.headCount, 4)
        XCTAssertEqual(config.kvHeadCount, 1)
        XCTAssertEqual(config.contextLength, 256)
    }

    func testCurrentSpelling() throws {
        let config = try SafetensorsCheckpoint(directory: Fixtures.model("tiny-mha")).config
        XCTAssertEqual(config.ropeTheta, 5_000)        // rope_parameters.rope_theta
        XCTAssertEqual(config.declaredDType, .f32)     // dtype
        XCTAssertEqual(config.queryWidth, 96)
        XCTAssertEqual(config.hiddenSize, 48)
    }

    func testDefaultsAndConflicts() throws {
        let base: [String: Any] = ["vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                                   "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4]
        let config = try GemmaConfig(json: base, path: "c.json")
        XCTAssertEqual(config.ropeTheta, 10_000)
        XCTAssertEqual(config.rmsNormEpsilon, 1e-6)
        XCTAssertEqual(config.contextLength, 8192)
        var conflicting = base
        conflicting["rope_theta"] = 10_000
        conflicting["rope_parameters"] = ["rope_type": "default", "rope_theta": 500]
        XCTAssertThrowsError(try GemmaConfig(json: conflicting, path: "c.json")) {
            XCTAssertEqual($0 as? CheckpointError, .invalidConfigField(file: "c.json", field: "rope_parameters.rope_theta",
                                                                       detail: "500.0 disagrees with rope_theta 10000.0"))
        }
        var relu = base
        relu["hidden_act"] = "relu"
        XCTAssertThrowsError(try GemmaConfig(json: relu, path: "c.json")) {
            XCTAssertEqual($0 as? CheckpointError, .invalidConfigField(file: "c.json", field: "hidden_act", detail: "'relu' is not a GELU activation"))
        }
    }
}
