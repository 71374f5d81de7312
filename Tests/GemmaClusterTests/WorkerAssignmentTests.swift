import Foundation
import GemmaCluster
import XCTest

/// What `gemma-shard --config --stage --replica` and `gemma-tokenizer --config --replica` take
/// from a cluster config, and the errors for places the config does not have.
final class WorkerAssignmentTests: XCTestCase {
    let config: ClusterConfig = {
        var config = ClusterConfig(model: "/models/model.gguf", modelName: "gemma",
                                   tokenizer: ["tcp://tokenizer:7100", "tcp://tokenizer2:7100"],
                                   stages: [.init(layers: "0-14", replicas: ["tcp://a:7101", "tcp://b:7101"]),
                                            .init(layers: "14-28", replicas: ["tcp://c:7102"])],
                                   http: "0.0.0.0:8080")
        config.kvCacheBytes = "2G"
        return config
    }()

    func testAShardTakesItsStagesLayersAndItsReplicasAddress() throws {
        XCTAssertEqual(try config.shardAssignment(stage: 0, replica: 1, path: "cluster.json"),
                       WorkerAssignment(model: "/models/model.gguf", listen: "tcp://b:7101", layers: "0-14",
                                        kvCacheBytes: "2G", field: "stages[0].replicas[1]"))
        XCTAssertEqual(try config.shardAssignment(stage: 1, path: "cluster.json").listen, "tcp://c:7102")
        XCTAssertEqual(try config.shardAssignment(stage: 1, path: "cluster.json").layers, "14-28")
    }

    func testATokenizerTakesTheModelAndItsAddress() throws {
        let assignment = try config.tokenizerAssignment(replica: 1, path: "cluster.json")
        XCTAssertEqual(assignment.listen, "tcp://tokenizer2:7100")
        XCTAssertEqual(assignment.model, "/models/model.gguf")
        XCTAssertNil(assignment.layers)
    }

    func testPlacesTheConfigDoesNotHaveAreNamed() {
        let cases: [(() throws -> WorkerAssignment, String)] = [
            ({ try self.config.shardAssignment(stage: 2, path: "cluster.json") },
             "cluster.json: stages[2] does not exist (the config has 2 stages)"),
            ({ try self.config.shardAssignment(stage: 1, replica: 1, path: "cluster.json") },
             "cluster.json: stages[1].replicas[1] does not exist (stage 1 has 1 replica)"),
            ({ try self.config.shardAssignment(stage: 0, replica: 5, path: "c.json") },
             "c.json: stages[0].replicas[5] does not exist (stage 0 has 2 replicas)"),
            ({ try self.config.tokenizerAssignment(replica: 2, path: "cluster.json") },
             "cluster.json: tokenizer[2] does not exist (the config lists 2 tokenizer addresses)"),
        ]
        for (body, expected) in cases {
            XCTAssertThrowsError(try body()) { error in
                XCTAssertEqual("\(error)", expected)
            }
        }
    }
}
