import Foundation
import GemmaTestSupport
import GemmaWire
import XCTest

/// The built services as processes -- gemma-tokenizer, gemma-shard workers and gemma-router --
/// over ipc:// and HTTP on loopback, with a shard killed by SIGKILL in the middle of a streamed
/// completion: (a) with a replica running, (b) restarted within the recovery bound, both giving
/// the undisturbed run's text for the same seed; (c) past the bound, a clear 503 error and the
/// other stage released the sequence.
final class ClusterProcessTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let model = root.appendingPathComponent("Tests/Fixtures/models/tiny-mqa").path

    /// A running cluster: its shard workers by stage, and the router's port.
    final class Cluster: @unchecked Sendable {
        let directory: URL
        var processes: [ServiceProcess] = []
        var shards: [[ServiceProcess]] = []
        var shardArguments: [[[String]]] = []
        var shardURLs: [[String]] = []
        var router: ServiceProcess!
        let port = HTTPTestClient.freePort()

        init() throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-process-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        }

        func url(_ name: String) -> String { "ipc://" + directory.appendingPathComponent(name + ".ipc").path }

        func start(_ executable: String, _ arguments: [String]) throws -> ServiceProcess {
            let process = try ServiceProcess(executable, arguments)
            processes.append(process)
            return process
        }

        /// Starts a shard again with the arguments it had.
        func restartShard(stage: Int, replica: Int) async throws {
            let process = try start("gemma-shard", shardArguments[stage][replica])
            shards[stage][replica] = process
            try await process.waitUntilListening()
        }

        func stop() {
            for process in processes { process.stop() }
            try? FileManager.default.removeItem(at: directory)
        }
    }

    var clusters: [Cluster] = []

    override func tearDown() {
        for cluster in clusters { cluster.stop() }
        clusters = []
    }

    /// Tokenizer, stages 0-1 and 1-3 of tiny-mqa (stage 1 with `replicas` workers) and the router.
    func startCluster(replicas: Int, recoverySeconds: Double) async throws -> Cluster {
        let cluster = try Cluster()
        clusters.append(cluster)
        let tokenizer = try cluster.start("gemma-tokenizer", ["--model", Self.model, "--listen", cluster.url("tokenizer")])
        for (s, layers) in ["0-1", "1-3"].enumerated() {
            cluster.shards.append([])
            cluster.shardArguments.append([])
            cluster.shardURLs.append([])
            for r in 0..<(s == 1 ? replicas : 1) {
                let url = cluster.url("stage\(s)-\(r)")
                let arguments = ["--model", Self.model, "--layers", layers, "--listen", url, "--kv-cache-bytes", "16M"]
                cluster.shards[s].append(try cluster.start("gemma-shard", arguments))
                cluster.shardArguments[s].append(arguments)
                cluster.shardURLs[s].append(url)
            }
        }
        let config = """
            {"model_name": "tiny", "tokenizer": ["\(cluster.url("tokenizer"))"],
             "stages": [{"layers": "0-1", "replicas": \(json(cluster.shardURLs[0]))},
                        {"layers": "1-3", "replicas": \(json(cluster.shardURLs[1]))}],
             "http": "127.0.0.1:\(cluster.port)",
             "scheduling": {"recovery_seconds": \(recoverySeconds), "stage_timeout_seconds": 2}}
            """
        let configPath = cluster.directory.appendingPathComponent("cluster.json").path
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        try await tokenizer.waitUntilListening()
        for process in cluster.shards.joined() { try await process.waitUntilListening() }
        cluster.router = try cluster.start("gemma-router", ["--config", configPath])
        try await cluster.router.waitForLog("serving HTTP")
        // Healthy once every stage answers.
        let giveUp = ContinuousClock.now + .seconds(30)
        while (try? await get(cluster, "/health").status) != 200 {
            guard ContinuousClock.now < giveUp else { throw TimedOut(what: "/health 200:\n\(cluster.router.log.text)") }
            try await Task.sleep(for: .milliseconds(50))
        }
        return cluster
    }

    func json(_ strings: [String]) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: strings, options: [.withoutEscapingSlashes]), as: UTF8.self)
    }

    func get(_ cluster: Cluster, _ path: String) async throws -> HTTPTestClient.Response {
        try await HTTPTestClient.fetch(port: cluster.port, path: path, timeoutSeconds: 5)
    }

    /// A streamed completion, sampled with a seed; `onFirstChunk` runs when the first token arrives.
    func streamedCompletion(_ cluster: Cluster, onFirstChunk: @escaping @Sendable () -> Void = {}) async throws -> (text: String, errors: [String], finish: String?) {
        let body = #"{"prompt": "To be, or not to be", "max_tokens": 150, "temperature": 0.9, "top_k": 40, "seed": 7, "ignore_eos": true, "stream": true}"#
        let fired = LockedFlag()
        let response = try await HTTPTestClient.fetch(port: cluster.port, method: "POST", path: "/v1/completions",
                                                      body: body, timeoutSeconds: 60) { data in
            if !fired.isSet, data.contains("\"text\"") {
                fired.set()
                onFirstChunk()
            }
        }
        XCTAssertEqual(response.status, 200, response.body)
        XCTAssertEqual(response.events.last, "[DONE]")
        var text = ""
        var errors: [String] = []
        var finish: String?
        for event in response.events.dropLast() {
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(event.utf8)) as? [String: Any], event)
            if let error = object["error"] as? [String: Any] {
                errors.append(String(decoding: try JSONSerialization.data(withJSONObject: error, options: [.sortedKeys]), as: UTF8.self))
                continue
            }
            for choice in object["choices"] as? [[String: Any]] ?? [] {
                text += choice["text"] as? String ?? ""
                if let reason = choice["finish_reason"] as? String { finish = reason }
            }
        }
        return (text, errors, finish)
    }

    func testKilledShardWithAReplicaRunningGivesTheUndisturbedText() async throws {
        let cluster = try await startCluster(replicas: 2, recoverySeconds: 20)
        let undisturbed = try await streamedCompletion(cluster)
        XCTAssertEqual(undisturbed.finish, "length")
        XCTAssertFalse(undisturbed.text.isEmpty)
        // An idle router puts the first request on lane 0, which uses replica 0 of every stage.
        let victim = cluster.shards[1][0]
        let disturbed = try await streamedCompletion(cluster) { victim.signal(SIGKILL) }
        XCTAssertEqual(disturbed.errors, [])
        XCTAssertEqual(disturbed.finish, "length")
        XCTAssertEqual(disturbed.text, undisturbed.text)
        XCTAssertFalse(victim.process.isRunning)
        XCTAssertTrue(cluster.router.log.text.contains("stage call failed"), "the killed replica was never used:\n\(cluster.router.log.text)")
    }

    func testKilledShardRestartedWithinTheBoundGivesTheUndisturbedText() async throws {
        let cluster = try await startCluster(replicas: 1, recoverySeconds: 30)
        let undisturbed = try await streamedCompletion(cluster)
        let victim = cluster.shards[1][0]
        let killed = LockedFlag()
        async let disturbed = streamedCompletion(cluster) {
            victim.signal(SIGKILL)
            killed.set()
        }
        try await waitUntil("the shard to be killed", timeout: .seconds(30)) { killed.isSet }
        _ = try await victim.waitForExit()
        try await Task.sleep(for: .seconds(1))
        try await cluster.restartShard(stage: 1, replica: 0)
        let result = try await disturbed
        XCTAssertEqual(result.errors, [])
        XCTAssertEqual(result.finish, "length")
        XCTAssertEqual(result.text, undisturbed.text)
        XCTAssertTrue(cluster.router.log.text.contains("stage call failed"), "the stream ended before the kill:\n\(cluster.router.log.text)")
    }

    func testPastTheRecoveryBoundTheClientGets503AndTheOtherStageIsReleased() async throws {
        let cluster = try await startCluster(replicas: 1, recoverySeconds: 2)
        let victim = cluster.shards[1][0]
        let result = try await streamedCompletion(cluster) { victim.signal(SIGKILL) }
        XCTAssertEqual(result.errors.count, 1, "\(result)")
        let error = result.errors.first ?? ""
        XCTAssertTrue(error.contains("\"code\":\"pipeline_unavailable\""), error)
        XCTAssertTrue(error.contains("layers 1-3"), error)
        // Stage 0 let go of the sequence.
        let stage0 = try RPCClient(url: cluster.shardURLs[0][0])
        defer { stage0.close() }
        let giveUp = ContinuousClock.now + .seconds(5)
        var active = UInt32.max
        while ContinuousClock.now < giveUp {
            active = try await stage0.call(ShardRPC.info, .init(), timeout: .seconds(2)).activeSequences
            if active == 0 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTAssertEqual(active, 0)
        // A new request while the stage is still down: HTTP 503 with OpenAI's error JSON.
        let refused = try await HTTPTestClient.fetch(port: cluster.port, method: "POST", path: "/v1/completions",
                                                     body: #"{"prompt": "Hello", "max_tokens": 4}"#, timeoutSeconds: 30)
        XCTAssertEqual(refused.status, 503, refused.body)
        XCTAssertTrue(refused.body.contains("\"type\":\"service_unavailable\""), refused.body)
        let health = try await get(cluster, "/health")
        XCTAssertEqual(health.status, 503)
        XCTAssertTrue(health.body.contains("layers 1-3"), health.body)
    }
}

/// A flag set from one thread and read from another.
final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

/// scripts/netns_cluster_test.sh: each service in its own network namespace, a generation
/// across them over TCP, a killed and restarted worker. Skipped where namespaces cannot be made.
final class MultiHostNamespaceTests: XCTestCase {
    func testClusterAcrossNetworkNamespacesSurvivesAKilledWorker() throws {
        let script = ClusterProcessTests.root.appendingPathComponent("scripts/netns_cluster_test.sh").path
        _ = try BuiltProducts.executable("gemma-router")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script, BuiltProducts.folder.path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        let log = OutputCollector(output)
        try process.run()
        process.waitUntilExit()
        Thread.sleep(forTimeInterval: 0.05)
        if process.terminationStatus == 77 { throw XCTSkip(log.text.trimmingCharacters(in: .whitespacesAndNewlines)) }
        XCTAssertEqual(process.terminationStatus, 0, log.text)
        XCTAssertTrue(log.text.contains("netns test: passed"), log.text)
    }
}
