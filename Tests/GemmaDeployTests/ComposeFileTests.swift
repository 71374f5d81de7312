import Foundation
import GemmaCluster
import GemmaTestSupport
import XCTest

/// compose/docker-compose.yml is a file Compose accepts, and it runs the topology of
/// compose/cluster.json: a shard service per stage replica on the config's address, the
/// tokenizer and the quantizer service on theirs, the router's HTTP port published (and no
/// other), and the shards loading the model the one-shot quantize service writes.
final class ComposeFileTests: XCTestCase {
    /// Where the services see the cluster config.
    static let configMount = "/config/cluster.json"

    func testDockerComposeAcceptsTheFile() throws {
        let run = try ComposeFile.config()
        XCTAssertEqual(run.status, 0, "docker-compose config refused compose/docker-compose.yml:\n\(run.stderr)")
        XCTAssertTrue(run.stdout.contains("services:"), run.stdout)
    }

    func testDockerComposeRefusesABrokenFile() throws {
        // The check above is worth something only if docker-compose does check.
        let path = NSTemporaryDirectory() + "gemma-compose-\(getpid())-\(UUID().uuidString).yml"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("services:\n  router:\n    image: x\n    depends_on:\n      shard0:\n        condition: when_it_feels_like_it\n".utf8)
            .write(to: URL(fileURLWithPath: path))
        let run = try ComposeFile.config(path)
        XCTAssertNotEqual(run.status, 0, run.stdout)
    }

    func testEveryStageReplicaHasAShardServiceOnItsAddress() throws {
        let compose = try ComposeFile.load()
        let cluster = try ClusterConfig.load(path: DeployFiles.clusterConfig)
        let shards = compose.services.values.filter { $0.command.first == "gemma-shard" }
        for (s, stage) in cluster.stages.enumerated() {
            for (r, url) in stage.replicas.enumerated() {
                let serving = shards.filter { Int($0.argument("--stage") ?? "") == s && Int($0.argument("--replica") ?? "0") == r }
                XCTAssertEqual(serving.count, 1, "stages[\(s)].replicas[\(r)] (\(url)) should be served by one shard service, not \(serving.map(\.name))")
                guard let shard = serving.first else { continue }
                try assertListens(shard, on: url, field: "stages[\(s)].replicas[\(r)]")
                try assertReadsTheClusterConfig(shard)
                XCTAssertNil(shard.argument("--layers"), "\(shard.name): the layers come from the config")
            }
        }
        for shard in shards {
            let stage = try XCTUnwrap(shard.argument("--stage").flatMap(Int.init), "\(shard.name) runs no --stage: \(shard.command)")
            XCTAssertTrue(cluster.stages.indices.contains(stage), "\(shard.name) serves stage \(stage), which cluster.json does not have")
        }
    }

    func testTheTokenizerAndTheQuantizerListenWhereTheConfigSays() throws {
        let compose = try ComposeFile.load()
        let cluster = try ClusterConfig.load(path: DeployFiles.clusterConfig)
        for (r, url) in cluster.tokenizer.enumerated() {
            let service = try XCTUnwrap(compose.services[tcpHostPort(url)?.host ?? ""], "tokenizer[\(r)] \(url) is no compose service")
            XCTAssertEqual(service.command.first, "gemma-tokenizer", "\(service.name) is not a tokenizer")
            XCTAssertEqual(Int(service.argument("--replica") ?? "0"), r, "\(service.name) listens on another tokenizer address")
            try assertListens(service, on: url, field: "tokenizer[\(r)]")
            try assertReadsTheClusterConfig(service)
        }
        if let quantizer = cluster.quantizer {
            let service = try XCTUnwrap(compose.services[tcpHostPort(quantizer.listen)?.host ?? ""],
                                        "quantizer.listen \(quantizer.listen) is no compose service")
            XCTAssertEqual(Array(service.command.prefix(2)), ["gemma-quantize", "serve"])
            XCTAssertEqual(service.argument("--listen"), quantizer.listen)
            XCTAssertEqual(service.argument("--models-dir"), quantizer.modelsDir)
            try assertListens(service, on: quantizer.listen, field: "quantizer.listen")
            let models = try XCTUnwrap(service.mount(at: quantizer.modelsDir), "\(service.name) mounts nothing at \(quantizer.modelsDir)")
            XCTAssertTrue(compose.namedVolumes.contains(models.source), "\(quantizer.modelsDir) is not the models volume")
            XCTAssertFalse(models.readOnly, "the quantizer service writes its outputs")
        }
    }

    func testOnlyTheRoutersHTTPPortIsPublished() throws {
        let compose = try ComposeFile.load()
        let cluster = try ClusterConfig.load(path: DeployFiles.clusterConfig)
        let routers = compose.services.values.filter { $0.command.first == "gemma-router" }
        XCTAssertEqual(routers.count, 1, "\(routers.map(\.name))")
        let router = try XCTUnwrap(routers.first)
        try assertReadsTheClusterConfig(router)
        let port = try XCTUnwrap(cluster.http.split(separator: ":").last.flatMap { Int($0) }, "http \(cluster.http)")
        XCTAssertTrue(cluster.http.hasPrefix("0.0.0.0:"), "http \(cluster.http): in a container the router must listen on all interfaces")
        XCTAssertEqual(router.published.map(\.container), [port], "the router publishes \(router.published), not the config's HTTP port \(port)")
        XCTAssertTrue(router.healthcheck.contains { $0.contains(":\(port)/health") }, "router health check: \(router.healthcheck)")
        for service in compose.services.values where service.name != router.name {
            XCTAssertTrue(service.published.isEmpty, "\(service.name) publishes \(service.published): nng ports stay on the compose network")
        }
        for worker in compose.services.values where ["gemma-shard", "gemma-tokenizer"].contains(worker.command.first) {
            XCTAssertNotNil(router.dependsOn[worker.name], "the router should start after \(worker.name)")
        }
    }

    func testTheShardsLoadTheModelTheQuantizeServiceWrites() throws {
        let compose = try ComposeFile.load()
        let cluster = try ClusterConfig.load(path: DeployFiles.clusterConfig)
        let model = try XCTUnwrap(cluster.model, "compose/cluster.json names no model")
        let modelsDirectory = URL(fileURLWithPath: model).deletingLastPathComponent().path

        let quantize = try XCTUnwrap(compose.services["quantize"], "no quantize service")
        XCTAssertTrue(quantize.profiles.isEmpty, "quantize must run by default")
        // Its command is `sh -c '... gemma-quantize /checkpoint -o OUTPUT ...'`.
        let words = quantize.command.joined(separator: " ").split(whereSeparator: \.isWhitespace).map(String.init)
        let converts = try XCTUnwrap(words.firstIndex(of: "gemma-quantize"), "quantize runs no gemma-quantize: \(quantize.command)")
        let output = words[converts...].firstIndex(of: "-o").map { words[$0 + 1] }
        XCTAssertEqual(output, model, "quantize writes \(output ?? "nothing"), the shards load \(model)")
        let checkpoint = words[converts + 1]
        XCTAssertNotNil(quantize.mount(at: checkpoint), "quantize converts \(checkpoint), which nothing is mounted at")
        let written = try XCTUnwrap(quantize.mount(at: modelsDirectory), "quantize mounts nothing at \(modelsDirectory)")
        XCTAssertTrue(compose.namedVolumes.contains(written.source), "\(modelsDirectory) in quantize is not a named volume")
        XCTAssertFalse(written.readOnly)

        let workers = compose.services.values.filter { ["gemma-shard", "gemma-tokenizer"].contains($0.command.first) }
        XCTAssertFalse(workers.isEmpty)
        for worker in workers {
            XCTAssertEqual(worker.mount(at: modelsDirectory)?.source, written.source,
                           "\(worker.name) does not see the models volume at \(modelsDirectory)")
            XCTAssertNil(worker.argument("--model"), "\(worker.name): the model comes from the config")
            XCTAssertEqual(worker.dependsOn["quantize"], "service_completed_successfully",
                           "\(worker.name) must start after the conversion has finished")
        }
    }

    func testTheDockerfileInstallsEveryExecutableTheServicesRun() throws {
        let compose = try ComposeFile.load()
        let dockerfile = try String(contentsOfFile: DeployFiles.dockerfile, encoding: .utf8)
        // The Dockerfile builds and copies the executables named in one line: ARG EXECUTABLES="...".
        let line = try XCTUnwrap(dockerfile.split(separator: "\n").first { $0.hasPrefix("ARG EXECUTABLES=") })
        let installed = Set(line.dropFirst("ARG EXECUTABLES=".count).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            .split(separator: " ").map(String.init))
        let run = Set(compose.services.values.compactMap { service -> String? in
            service.command.first == "sh" ? "gemma-quantize" : service.command.first
        })
        XCTAssertEqual(run, ["gemma-quantize", "gemma-tokenizer", "gemma-shard", "gemma-router"])
        XCTAssertTrue(run.isSubset(of: installed), "compose/Dockerfile installs \(installed.sorted()), the services run \(run.sorted())")
        XCTAssertTrue(dockerfile.contains("--static-swift-stdlib"))
        XCTAssertTrue(dockerfile.contains("curl"), "the router's health check runs curl in the image")
    }

    // MARK: Helpers

    /// `service` is the compose host of `url` and exposes its port on the compose network.
    private func assertListens(_ service: ComposeFile.Service, on url: String, field: String,
                               file: StaticString = #filePath, line: UInt = #line) throws {
        let (host, port) = try XCTUnwrap(tcpHostPort(url), "\(field) \(url) is not tcp://HOST:PORT", file: file, line: line)
        XCTAssertEqual(host, service.name, "\(field) \(url) names host \(host), but the service is \(service.name)", file: file, line: line)
        XCTAssertTrue(service.expose.contains(port), "\(service.name) does not expose \(port) (\(field) \(url))", file: file, line: line)
    }

    /// `service` runs with `--config /config/cluster.json`, where compose/cluster.json is mounted.
    private func assertReadsTheClusterConfig(_ service: ComposeFile.Service, file: StaticString = #filePath,
                                             line: UInt = #line) throws {
        XCTAssertEqual(service.argument("--config"), Self.configMount, "\(service.name): \(service.command)", file: file, line: line)
        let mount = try XCTUnwrap(service.mount(at: Self.configMount), "\(service.name) mounts nothing at \(Self.configMount)",
                                  file: file, line: line)
        XCTAssertEqual(URL(fileURLWithPath: mount.source).standardizedFileURL.path,
                       URL(fileURLWithPath: DeployFiles.clusterConfig).standardizedFileURL.path, file: file, line: line)
        XCTAssertTrue(mount.readOnly, "\(service.name) mounts the config writable", file: file, line: line)
    }
}
