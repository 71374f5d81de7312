import Foundation
@testable import GemmaCluster
import GemmaTestSupport
import XCTest

/// The cluster config: parsing, and the layer-coverage checks the router makes at start.
final class ClusterConfigTests: XCTestCase {
    func config(_ stages: [(String, [String])]) -> ClusterConfig {
        ClusterConfig(modelName: "gemma", tokenizer: ["tcp://127.0.0.1:5600"],
                      stages: stages.map { ClusterConfig.Stage(layers: $0.0, replicas: $0.1) }, http: "127.0.0.1:8080")
    }

    func testParsesTheFileFormat() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("""
        {"model": "Models/tiny-shakespeare", "model_name": "tiny", "tokenizer": ["ipc:///tmp/t"],
         "stages": [{"layers": "0-3", "replicas": ["ipc:///tmp/a", "ipc:///tmp/b"]}, {"layers": "3-6", "replicas": ["ipc:///tmp/c"]}],
         "http": "127.0.0.1:9000", "api_key": "secret", "scheduling": {"max_batch_sequences": 4}}
        """.utf8).write(to: URL(fileURLWithPath: path))
        let config = try ClusterConfig.load(path: path)
        XCTAssertEqual(config.modelName, "tiny")
        XCTAssertEqual(config.stages.map(\.layerRange), [0..<3, 3..<6])
        XCTAssertEqual(config.stages[0].replicas.count, 2)
        XCTAssertEqual(config.apiKey, "secret")
        XCTAssertEqual(config.layerCount, 6)
        XCTAssertEqual(config.scheduling.maxBatchSequences, 4)
        XCTAssertEqual(config.scheduling.maxPrefillTokens, 256)  // the default
    }

    func testMissingFieldIsNamed() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data(#"{"tokenizer": ["ipc:///tmp/t"]}"#.utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try ClusterConfig.load(path: path)) {
            XCTAssertEqual("\($0)", "\(path): missing field 'stages'")
        }
    }

    func testStagesMustCoverEveryLayerOnce() {
        XCTAssertNoThrow(try config([("0-3", ["a"]), ("3-6", ["b"])]).validate())
        XCTAssertThrowsError(try config([("0-3", ["a"]), ("4-6", ["b"])]).validate()) {
            XCTAssertTrue("\($0)".contains("layers 3-4 are in no stage"), "\($0)")
        }
        XCTAssertThrowsError(try config([("0-3", ["a"]), ("2-6", ["b"])]).validate()) {
            XCTAssertTrue("\($0)".contains("overlaps"), "\($0)")
        }
        XCTAssertThrowsError(try config([("1-6", ["a"])]).validate())
        XCTAssertThrowsError(try config([("0-6", [])]).validate()) {
            XCTAssertTrue("\($0)".contains("no replicas"), "\($0)")
        }
        XCTAssertThrowsError(try config([("six", ["a"])]).validate()) {
            XCTAssertTrue("\($0)".contains("'six'"), "\($0)")
        }
    }

    func testStopStringHelpers() {
        XCTAssertEqual(PipelineScheduler.firstStop(in: "Hello, world. Bye", stops: ["world", "Hello,"])?.0, "")
        XCTAssertEqual(PipelineScheduler.firstStop(in: "Hello, world. Bye", stops: ["Bye", "."])?.0, "Hello, world")
        XCTAssertNil(PipelineScheduler.firstStop(in: "abc", stops: ["x", ""]))
        // A suffix that may begin a stop string is held back.
        XCTAssertEqual(PipelineScheduler.stopPrefixLength(of: "the end of turn", stops: ["turning"]), 4)
        XCTAssertEqual(PipelineScheduler.stopPrefixLength(of: "abc", stops: ["zz"]), 0)
        XCTAssertEqual(PipelineScheduler.stopPrefixLength(of: "ab", stops: ["abc", "b"]), 2)
    }
}
