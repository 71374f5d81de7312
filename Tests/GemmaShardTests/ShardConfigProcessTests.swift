import Foundation
@testable import GemmaWire
import GemmaTestSupport
import XCTest

/// `gemma-shard --config FILE --stage I [--replica R]`: the worker takes its model, layers,
/// listen address and KV budget from a cluster config, flags override them, and a config that
/// does not name the worker's place fails with the file and the field.
final class ShardConfigProcessTests: XCTestCase {
    /// A cluster config for tiny-mqa (3 layers) in two stages, written to a temporary file.
    private func writeConfig(_ json: [String: Any]? = nil) throws -> (path: String, stageURLs: [String]) {
        let stageURLs = [ShardFixtures.ipcURL("config-stage0"), ShardFixtures.ipcURL("config-stage1")]
        let config = json ?? [
            "model": ShardFixtures.tinyMQA,
            "tokenizer": [ShardFixtures.ipcURL("config-tokenizer")],
            "stages": [["layers": "0-1", "replicas": [stageURLs[0]]],
                       ["layers": "1-3", "replicas": [stageURLs[1]]]],
            "kv_cache_bytes": "2M",
        ]
        let path = NSTemporaryDirectory() + "gemma-shard-config-\(getpid())-\(UUID().uuidString).json"
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: path))
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return (path, stageURLs)
    }

    private func start(_ arguments: [String]) async throws -> ServiceProcess {
        let process = try ServiceProcess("gemma-shard", arguments)
        addTeardownBlock { process.stop() }
        try await process.waitUntilListening()
        return process
    }

    private func info(_ url: String) async throws -> Gemma_V1_ShardInfo {
        let client = try RPCClient(url: url)
        defer { client.close() }
        return try await client.call(ShardRPC.info, Gemma_V1_ShardInfoRequest(), timeout: .seconds(10))
    }

    func testServesTheStageTheConfigNames() async throws {
        let (path, stageURLs) = try writeConfig()
        let shard = try await start(["--config", path, "--stage", "1"])
        XCTAssertEqual(shard.urls, [stageURLs[1]])
        let info = try await info(stageURLs[1])
        XCTAssertEqual([info.firstLayer, info.endLayer, info.layerCount], [1, 3, 3])
        XCTAssertEqual([info.isFirst, info.isLast], [false, true])
        XCTAssertEqual(info.kvCapacityBytes, 2 << 20, "kv_cache_bytes from the config")
        XCTAssertTrue(shard.log.text.contains("config=\(path) stages[1].replicas[0]"), shard.log.text)
        shard.signal(SIGTERM)
        let status = try await shard.waitForExit()
        XCTAssertEqual(status, 0, shard.log.text)
    }

    func testFlagsOverrideTheConfig() async throws {
        let (path, _) = try writeConfig()
        let url = ShardFixtures.ipcURL("config-override")
        let shard = try await start(["--config", path, "--stage", "0", "--listen", url, "--kv-cache-bytes", "1M",
                                     "--layers", "0-2"])
        XCTAssertEqual(shard.urls, [url])
        let info = try await info(url)
        XCTAssertEqual([info.firstLayer, info.endLayer], [0, 2])
        XCTAssertEqual(info.isFirst, true)
        XCTAssertEqual(info.kvCapacityBytes, 1 << 20)
    }

    func testAConfigThatDoesNotPlaceTheWorkerFailsNamingFileAndField() async throws {
        let (path, _) = try writeConfig()
        let noModel = try writeConfig(["tokenizer": ["inproc://t"], "stages": [["layers": "0-3", "replicas": ["inproc://s"]]]]).path
        let badBytes = try writeConfig(["model": ShardFixtures.tinyMQA, "tokenizer": ["inproc://t"], "kv_cache_bytes": "lots",
                                        "stages": [["layers": "0-3", "replicas": ["inproc://s"]]]]).path
        let tooManyLayers = try writeConfig(["model": ShardFixtures.tinyMQA, "tokenizer": ["inproc://t"],
                                             "stages": [["layers": "0-2", "replicas": ["inproc://a"]],
                                                        ["layers": "2-9", "replicas": ["inproc://b"]]]]).path
        let gap = try writeConfig(["model": ShardFixtures.tinyMQA, "tokenizer": ["inproc://t"],
                                   "stages": [["layers": "0-1", "replicas": ["inproc://a"]],
                                              ["layers": "2-3", "replicas": ["inproc://b"]]]]).path
        for (arguments, expected) in [
            (["--config", path, "--stage", "2"], "\(path): stages[2] does not exist (the config has 2 stages)"),
            (["--config", path, "--stage", "0", "--replica", "1"], "\(path): stages[0].replicas[1] does not exist (stage 0 has 1 replica)"),
            (["--config", path], "--config needs --stage"),
            (["--stage", "0", "--model", ShardFixtures.tinyMQA, "--listen", "inproc://x"], "--stage and --replica go with --config"),
            (["--listen", "inproc://x"], "give --model"),
            (["--config", "/nonexistent/cluster.json", "--stage", "0"], "/nonexistent/cluster.json: cannot read the file"),
            (["--config", noModel, "--stage", "0"], "\(noModel): 'model' is missing"),
            (["--config", badBytes, "--stage", "0"], "\(badBytes): kv_cache_bytes must be a byte count"),
            (["--config", tooManyLayers, "--stage", "1"], "\(tooManyLayers): stages[1].layers 2-9 is outside the model's 3 layers"),
            (["--config", gap, "--stage", "0"], "\(gap): layers 1-2 are in no stage"),
        ] {
            let process = try ServiceProcess("gemma-shard", arguments)
            let status = try await process.waitForExit()
            XCTAssertNotEqual(status, 0, "\(arguments)")
            XCTAssertTrue(process.log.text.contains(expected), "\(arguments): expected \"\(expected)\" in: \(process.log.text)")
        }
    }
}
