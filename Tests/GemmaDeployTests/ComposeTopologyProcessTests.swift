import Foundation
import GemmaCluster
@testable import GemmaWire
import GemmaTestSupport
import XCTest

/// The compose deployment without Docker: every service's command from
/// compose/docker-compose.yml runs as a local process, with the container paths mapped to local
/// ones and compose/cluster.json's addresses moved to local ipc:// sockets. The one-shot
/// quantize command converts the bundled model, the workers start from the config alone, and
/// the router answers /health and a completion.
final class ComposeTopologyProcessTests: XCTestCase {
    /// Container paths and the local folders that stand in for them.
    struct PathMap {
        var pairs: [(container: String, local: String)]

        /// `text` with every container path replaced by its local folder (longest first).
        func apply(_ text: String) -> String {
            var result = text
            for (container, local) in pairs.sorted(by: { $0.container.count > $1.container.count }) {
                result = result.replacingOccurrences(of: container, with: local)
            }
            return result
        }
    }

    func testTheComposeServicesRunAsLocalProcesses() async throws {
        let compose = try ComposeFile.load()
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("gemma-compose-\(getpid())-\(UUID().uuidString.prefix(8))")
        let models = run.appendingPathComponent("models").path
        try FileManager.default.createDirectory(atPath: models, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: run) }

        // The cluster config with local addresses and the model in the local models folder.
        var cluster = try ClusterConfig.load(path: DeployFiles.clusterConfig)
        let port = HTTPTestClient.freePort()
        let socket = { (host: String) in "ipc://" + run.appendingPathComponent("\(host).ipc").path }
        let local = { (url: String) in socket(tcpHostPort(url)?.host ?? "unknown") }
        cluster.tokenizer = cluster.tokenizer.map(local)
        cluster.stages = cluster.stages.map { ClusterConfig.Stage(layers: $0.layers, replicas: $0.replicas.map(local)) }
        if let quantizer = cluster.quantizer { cluster.quantizer?.listen = local(quantizer.listen) }
        cluster.http = "127.0.0.1:\(port)"
        let volumeTarget = URL(fileURLWithPath: try XCTUnwrap(cluster.model)).deletingLastPathComponent().path
        cluster.model = cluster.model.map { models + $0.dropFirst(volumeTarget.count) }
        let configPath = run.appendingPathComponent("cluster.json").path
        try cluster.encoded().write(to: URL(fileURLWithPath: configPath))

        /// A service's mounts as local paths: the named volume is `models`, the config is ours.
        func paths(_ service: ComposeFile.Service) -> PathMap {
            PathMap(pairs: service.volumes.map { volume in
                if compose.namedVolumes.contains(volume.source) { return (volume.target, models) }
                if volume.target == ComposeFileTests.configMount { return (volume.target, configPath) }
                return (volume.target, volume.source)
            })
        }
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = BuiltProducts.folder.path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        environment["GEMMA_QUANT_TYPE"] = "q8_0"
        environment["GEMMA_RECONVERT"] = "0"

        // The one-shot conversion, twice: the second run keeps the file.
        let quantize = try XCTUnwrap(compose.services["quantize"])
        let quantizeCommand = quantize.command.map(paths(quantize).apply).map { $0.replacingOccurrences(of: "$$", with: "$") }
        XCTAssertEqual(quantizeCommand.first, "sh")
        let shell = try XCTUnwrap(BuiltProducts.onPath("sh"))
        let first = try ToolRun.run(shell, Array(quantizeCommand.dropFirst()), environment: environment)
        XCTAssertEqual(first.status, 0, first.stdout + first.stderr)
        let model = try XCTUnwrap(cluster.model)
        XCTAssertTrue(FileManager.default.fileExists(atPath: model), "quantize wrote no \(model): \(first.stdout)\(first.stderr)")
        let second = try ToolRun.run(shell, Array(quantizeCommand.dropFirst()), environment: environment)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stdout.contains("keeping"), second.stdout)

        // The workers, then the router, each from its compose command.
        var started: [ServiceProcess] = []
        let order = compose.services.values.filter { $0.profiles.isEmpty && $0.command.first?.hasPrefix("gemma-") == true }
            .sorted { ($0.command.first == "gemma-router" ? 1 : 0, $0.name) < ($1.command.first == "gemma-router" ? 1 : 0, $1.name) }
        for service in order {
            let arguments = service.command.dropFirst().map(paths(service).apply)
            let process = try ServiceProcess(service.command[0], Array(arguments) + ["--log-level", "info"])
            addTeardownBlock { process.stop() }
            started.append(process)
        }
        let router = try XCTUnwrap(started.last)
        XCTAssertEqual(router.name, "gemma-router")
        try await router.waitForLog("serving HTTP", timeout: .seconds(60))
        try await waitUntil("/health to answer 200:\n\(router.log.text)", timeout: .seconds(30)) {
            (try? HTTPTestClient.request(port: port, path: "/health", timeoutSeconds: 5).status) == 200
        }
        let answer = try HTTPTestClient.request(port: port, method: "POST", path: "/v1/completions", body: """
            {"model": "\(cluster.modelName)", "prompt": "ROMEO:", "max_tokens": 8, "temperature": 0, "ignore_eos": true}
            """)
        XCTAssertEqual(answer.status, 200, answer.body)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any])
        let usage = try XCTUnwrap(json["usage"] as? [String: Any], answer.body)
        XCTAssertEqual(usage["completion_tokens"] as? Int, 8, answer.body)

        for process in started.reversed() {
            process.signal(SIGTERM)
            let status = try await process.waitForExit()
            XCTAssertEqual(status, 0, "\(process.name): \(process.log.text)")
        }
    }

    func testATokenizerReplicaTheConfigDoesNotHaveIsNamed() async throws {
        let process = try ServiceProcess("gemma-tokenizer", ["--config", DeployFiles.clusterConfig, "--replica", "3"])
        let status = try await process.waitForExit()
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(process.log.text.contains("\(DeployFiles.clusterConfig): tokenizer[3] does not exist (the config lists 1 tokenizer address)"),
                      process.log.text)
    }
}
