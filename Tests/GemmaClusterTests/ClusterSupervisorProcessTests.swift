import Foundation
import GemmaTestSupport
import XCTest

/// `gemma cluster up` as a process: a router killed with SIGKILL mid-stream is restarted like a
/// worker, frees what the killed router left on the stages, and serves again; the cluster
/// stops cleanly on SIGINT afterwards.
final class ClusterSupervisorProcessTests: XCTestCase {
    static let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/models/tiny-mqa").path

    func testAKilledRouterIsRestartedAndFreesWhatTheOldOneLeft() async throws {
        let port = HTTPTestClient.freePort()
        let cluster = try ServiceProcess("gemma", ["cluster", "up", "--model", Self.model, "--stages", "2",
                                                   "--http", "127.0.0.1:\(port)"])
        var stopped = false
        defer {
            if !stopped {
                cluster.signal(SIGINT)
                cluster.process.waitUntilExit()
            }
        }
        try await cluster.waitForLog("OpenAI API:", timeout: .seconds(120))
        let router = try XCTUnwrap(Self.child(of: cluster.pid, named: "gemma-router"), cluster.log.text)

        // A long stream; the router dies under it after its first token.
        let firstData = AsyncStream<Void>.makeStream()
        let body = #"{"prompt": [2, 17, 301], "max_tokens": 200, "ignore_eos": true, "stream": true}"#
        let stream = Task {
            try? await HTTPTestClient.fetch(port: port, method: "POST", path: "/v1/completions", body: body) { data in
                if data.contains("data: {") { firstData.continuation.yield() }
            }
        }
        for await _ in firstData.stream { break }
        kill(router, SIGKILL)
        _ = await stream.value

        try await cluster.waitForLog("router was killed by signal 9; restarting it", timeout: .seconds(10))
        let healthy = ContinuousClock.now + .seconds(60)
        while (try? await HTTPTestClient.fetch(port: port, path: "/health", timeoutSeconds: 5))?.status != 200 {
            guard ContinuousClock.now < healthy else { return XCTFail("the restarted router never became healthy:\n\(cluster.log.text)") }
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTAssertNotEqual(Self.child(of: cluster.pid, named: "gemma-router"), router)

        // The killed router's sequence no longer holds KV cache on either stage.
        let metrics = try await HTTPTestClient.fetch(port: port, path: "/metrics")
        let usage = metrics.body.split(separator: "\n").filter { $0.hasPrefix("gemma:kv_cache_usage_perc{") }
        XCTAssertEqual(usage.count, 2, metrics.body)
        for line in usage { XCTAssertEqual(line.split(separator: " ").last.flatMap { Double($0) }, 0, String(line)) }

        let answer = try await HTTPTestClient.fetch(port: port, method: "POST", path: "/v1/completions",
                                                    body: #"{"prompt": [2, 17, 301], "max_tokens": 8, "ignore_eos": true}"#)
        XCTAssertEqual(answer.status, 200, answer.body)

        cluster.signal(SIGINT)
        let status = try await cluster.waitForExit(timeout: .seconds(60))
        stopped = true
        XCTAssertEqual(status, 0, cluster.log.text)
        XCTAssertNil(Self.child(of: cluster.pid, named: "gemma-router"))
    }

    /// The pid of the child of `parent` running `name`, read from /proc.
    static func child(of parent: Int32, named name: String) -> Int32? {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = Int32(entry),
                  let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.range(of: ")", options: .backwards) else { continue }
            let fields = stat[close.upperBound...].split(separator: " ")
            guard fields.count > 1, Int32(fields[1]) == parent,
                  let command = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            let executable = command.split(separator: 0).first.map { String(decoding: $0, as: UTF8.self) } ?? ""
            if URL(fileURLWithPath: executable).lastPathComponent == name { return pid }
        }
        return nil
    }
}
