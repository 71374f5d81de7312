import Foundation
import GemmaCluster
@testable import GemmaRouter
import GemmaShard
import GemmaShardService
import GemmaTokenizerService
import GemmaServiceTestSupport
import GemmaWire
import Hummingbird
import HummingbirdTesting
import Logging
import XCTest

/// The OpenAI-compatible HTTP API over a real pipeline: tokenizer and two shard stages as
/// in-process services over nng (inproc://), the scheduler, and Hummingbird's test client.
class RouterTestCase: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let model = root.appendingPathComponent("Tests/Fixtures/models/tiny-mqa").path

    static func quiet(_ label: String) -> Logger { InProcessService.quiet(label) }

    var services: [InProcessService] = []
    var schedulers: [PipelineScheduler] = []
    var stage0: InProcessService!
    var stage1: InProcessService!

    override func tearDown() async throws {
        for scheduler in schedulers { await scheduler.stop() }
        for service in services { await service.stop() }
        services = []
        schedulers = []
    }

    /// A router over tokenizer + stages 0-1 and 1-3 of tiny-mqa.
    func makeRouter(apiKey: String? = nil, contextLength: Int = 256, maxWaiting: Int = 64, maxBatch: Int = 16,
                    recoverySeconds: Double = 20, idleTimeoutSeconds: Int64 = 30) throws -> OpenAIRouter {
        let tokenizer = try InProcessService(model: Self.model, tokenizer: true)
        stage0 = try InProcessService(model: Self.model, layers: 0..<1)
        stage1 = try InProcessService(model: Self.model, layers: 1..<3)
        services += [tokenizer, stage0, stage1]
        var config = ClusterConfig(modelName: "tiny", tokenizer: [tokenizer.url],
                                   stages: [.init(layers: "0-1", replicas: [stage0.url]), .init(layers: "1-3", replicas: [stage1.url])],
                                   http: "127.0.0.1:0")
        config.scheduling.hiddenDType = "f32"
        config.scheduling.recoverySeconds = recoverySeconds
        config.scheduling.stageTimeoutSeconds = 2
        config.scheduling.maxWaitingRequests = maxWaiting
        config.scheduling.maxBatchSequences = maxBatch
        let quick = RPCClient.Configuration(retry: .never)
        let stages = try config.stages.map { try $0.replicas.map { try RPCClient(url: $0, configuration: quick) } }
        let tokenizerClient = try RPCClient(url: tokenizer.url, configuration: quick)
        let scheduler = PipelineScheduler(config: config, stages: stages, tokenizer: tokenizerClient,
                                          contextLength: contextLength, logger: Self.quiet("scheduler"))
        schedulers.append(scheduler)
        Task { await scheduler.start() }
        var configuration = OpenAIRouter.Configuration(modelName: "tiny", apiKey: apiKey)
        configuration.healthCacheSeconds = 0
        configuration.idleTimeoutSeconds = idleTimeoutSeconds
        return OpenAIRouter(scheduler: scheduler, cluster: config, tokenizer: tokenizerClient, stages: stages,
                            contextLength: contextLength,
                            configuration: configuration, logger: Self.quiet("http"))
    }

    func app(_ router: OpenAIRouter) -> some ApplicationProtocol {
        Application(router: router.buildRouter(), logger: Self.quiet("app"))
    }

    func post(_ client: some TestClientProtocol, _ path: String, _ body: String,
              headers: HTTPFields = [.contentType: "application/json"]) async throws -> TestResponse {
        try await client.execute(uri: path, method: .post, headers: headers, body: ByteBuffer(string: body))
    }

    func object(_ response: TestResponse, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let text = String(buffer: response.body)
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            XCTFail("not a JSON object: \(text)", file: file, line: line)
            return [:]
        }
        return object
    }

    /// The `data:` payloads of an SSE body, checking the framing.
    func events(_ response: TestResponse, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        let text = String(buffer: response.body)
        XCTAssertTrue(text.hasSuffix("data: [DONE]\n\n"), text, file: file, line: line)
        let parts = text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        for part in parts { XCTAssertTrue(part.hasPrefix("data: "), part, file: file, line: line) }
        return parts.map { String($0.dropFirst("data: ".count)) }
    }

    func assertError(_ response: TestResponse, _ status: HTTPResponse.Status, param: String? = nil,
                     file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(response.status, status, String(buffer: response.body), file: file, line: line)
        let json = try object(response, file: file, line: line)
        let error = try XCTUnwrap(json["error"] as? [String: Any], file: file, line: line)
        XCTAssertEqual(Set(error.keys), ["message", "type", "param", "code"], file: file, line: line)
        XCTAssertFalse((error["message"] as? String ?? "").isEmpty, file: file, line: line)
        if let param { XCTAssertEqual(error["param"] as? String, param, file: file, line: line) }
    }

    func referencePrompts() throws -> [[Int]] {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.model + "/reference.json"))) as! [String: Any]
        return (json["prompts"] as! [[String: Any]]).map { $0["tokens"] as! [Int] }
    }

}

final class RouterTests: RouterTestCase {
    // MARK: Completions

    func testCompletionHasOpenAIShapeAndTheSchedulersGreedyText() async throws {
        let router = try makeRouter()
        let prompt = try referencePrompts()[2]
        // The scheduler alone, greedy.
        var sampling = Gemma_V1_SamplingParams()
        sampling.temperature = 0
        let stream = try await router.scheduler.submit(ClusterGenerationRequest(
            prompt: prompt.map(Int32.init), sampling: sampling, maxTokens: 12))
        var collected = ""
        for try await event in stream { if case let .delta(text, _) = event { collected += text } }
        let expected = collected

        try await app(router).test(.router) { client in
            let body = #"{"model": "tiny", "prompt": \#(prompt), "max_tokens": 12, "temperature": 0, "ignore_eos": true}"#
            let response = try await post(client, "/v1/completions", body)
            XCTAssertEqual(response.status, .ok, String(buffer: response.body))
            XCTAssertEqual(response.headers[.contentType], "application/json")
            let json = try object(response)
            XCTAssertEqual(Set(json.keys), ["id", "object", "created", "model", "choices", "usage"])
            XCTAssertTrue((json["id"] as? String ?? "").hasPrefix("cmpl-"))
            XCTAssertEqual(json["object"] as? String, "text_completion")
            XCTAssertEqual(json["model"] as? String, "tiny")
            XCTAssertNotNil(json["created"] as? Int)
            let choices = try XCTUnwrap(json["choices"] as? [[String: Any]])
            XCTAssertEqual(choices.count, 1)
            XCTAssertEqual(Set(choices[0].keys), ["index", "text", "logprobs", "finish_reason"])
            XCTAssertEqual(choices[0]["index"] as? Int, 0)
            XCTAssertEqual(choices[0]["text"] as? String, expected)
            XCTAssertTrue(choices[0]["logprobs"] is NSNull)
            XCTAssertEqual(choices[0]["finish_reason"] as? String, "length")
            let usage = try XCTUnwrap(json["usage"] as? [String: Int])
            XCTAssertEqual(usage, ["prompt_tokens": prompt.count, "completion_tokens": 12, "total_tokens": prompt.count + 12])
        }
    }

    func testTextPromptStringOrArrayOfOneAndDefaultMaxTokens() async throws {
        let router = try makeRouter()
        try await app(router).test(.router) { client in
            let a = try object(try await post(client, "/v1/completions", #"{"prompt": "Hello there", "temperature": 0, "ignore_eos": true}"#))
            let b = try object(try await post(client, "/v1/completions", #"{"prompt": ["Hello there"], "temperature": 0, "ignore_eos": true}"#))
            let textA = (a["choices"] as? [[String: Any]])?.first?["text"] as? String
            XCTAssertNotNil(textA)
            XCTAssertEqual(textA, (b["choices"] as? [[String: Any]])?.first?["text"] as? String)
            XCTAssertEqual((a["usage"] as? [String: Int])?["completion_tokens"], 16)
        }
    }

    func testSameSeedSameTextAndDefaultSeedIsFixed() async throws {
        let router = try makeRouter()
        try await app(router).test(.router) { client in
            func text(_ body: String) async throws -> String {
                let json = try object(try await post(client, "/v1/completions", body))
                return try XCTUnwrap((json["choices"] as? [[String: Any]])?.first?["text"] as? String)
            }
            let seeded = #"{"prompt": "To be", "max_tokens": 20, "seed": 1234, "ignore_eos": true, "top_k": 50}"#
            let first = try await text(seeded)
            let second = try await text(seeded)
            XCTAssertEqual(second, first)
            let unseeded = #"{"prompt": "To be", "max_tokens": 20, "ignore_eos": true}"#
            let again = try await text(unseeded)
            let again2 = try await text(unseeded)
            XCTAssertEqual(again2, again)
        }
    }

    func testStreamingCompletionChunksUsageAndDone() async throws {
        let router = try makeRouter()
        try await app(router).test(.router) { client in
            let whole = try object(try await post(client, "/v1/completions",
                                                   #"{"prompt": "Once", "max_tokens": 10, "temperature": 0, "ignore_eos": true}"#))
            let expected = (whole["choices"] as? [[String: Any]])?.first?["text"] as? String
            let response = try await post(client, "/v1/completions",
                                          #"{"prompt": "Once", "max_tokens": 10, "temperature": 0, "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true}}"#)
            XCTAssertEqual(response.status, .ok)
            XCTAssertEqual(response.headers[.contentType], "text/event-stream")
            let payloads = events(response)
            XCTAssertEqual(payloads.last, "[DONE]")
            let chunks = try payloads.dropLast().map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            var text = ""
            for chunk in chunks.dropLast() {
                XCTAssertEqual(chunk["object"] as? String, "text_completion")
                XCTAssertEqual(Set(chunk.keys), ["id", "object", "created", "model", "choices", "usage"])
                XCTAssertTrue(chunk["usage"] is NSNull)
                let choice = try XCTUnwrap((chunk["choices"] as? [[String: Any]])?.first)
                XCTAssertEqual(Set(choice.keys), ["index", "text", "logprobs", "finish_reason"])
                text += choice["text"] as? String ?? ""
            }
            XCTAssertEqual(text, expected)
            let last = chunks[chunks.count - 2]
            XCTAssertEqual((last["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String, "length")
            let usageChunk = chunks[chunks.count - 1]
            XCTAssertEqual((usageChunk["choices"] as? [Any])?.count, 0)
            XCTAssertEqual((usageChunk["usage"] as? [String: Int])?["completion_tokens"], 10)
            XCTAssertEqual(Set(chunks.map { $0["id"] as! String }).count, 1)
        }
    }

    func testCompletionLogprobs() async throws {
        let router = try makeRouter()
        try await app(router).test(.router) { client in
            let json = try object(try await post(client, "/v1/completions",
                                                  #"{"prompt": "Once", "max_tokens": 5, "temperature": 0, "ignore_eos": true, "logprobs": 3}"#))
            let logprobs = try XCTUnwrap((json["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any])
            XCTAssertEqual(Set(logprobs.keys), ["tokens", "token_logprobs", "top_logprobs", "text_offset"])
            XCTAssertEqual((logprobs["tokens"] as? [String])?.count, 5)
            let values = try XCTUnwrap(logprobs["token_logprobs"] as? [Double])
            XCTAssertTrue(values.allSatisfy { $0 <= 0 })
            let tops = try XCTUnwrap(logprobs["top_logprobs"] as? [[String: Double]])
            XCTAssertTrue(tops.allSatisfy { !$0.isEmpty && $0.count <= 3 })
            XCTAssertEqual((logprobs["tokens"] as? [String])?.joined(), (json["choices"] as? [[String: Any]])?.first?["text"] as? String)
        }
    }

    // MARK: Chat

    func testChatCompletionShapeAndStreamingMatchesWhole() async throws {
        let router = try makeRouter()
        try await app(router).test(.router) { client in
            let request = #"{"model": "tiny", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "max_tokens": 8, "temperature": 0, "ignore_eos": true"#
            let response = try await post(client, "/v1/chat/completions", request + "}")
            XCTAssertEqual(response.status, .ok, String(buffer: response.body))
            let json = try object(response)
            XCTAssertEqual(Set(json.keys), ["id", "object", "created", "model", "choices", "usage"])
            XCTAssertTrue((json["id"] as? String ?? "").hasPrefix("chatcmpl-"))
            XCTAssertEqual(json["object"] as? String, "chat.completion")
            let choice = try XCTUnwrap((json["choices"] as? [[String: Any]])?.first)
            XCTAssertEqual(Set(choice.keys), ["index", "message", "logprobs", "finish_reason"])
            let message = try XCTUnwrap(choice["message"] as? [String: Any])
            XCTAssertEqual(message["role"] as? String, "assistant")
            let content = try XCTUnwrap(message["content"] as? String)
            XCTAssertEqual(choice["finish_reason"] as? String, "length")
            let usage = try XCTUnwrap(json["usage"] as? [String: Int])
            XCTAssertEqual(usage["completion_tokens"], 8)
            XCTAssertGreaterThan(usage["prompt_tokens"] ?? 0, 5)

            let streamed = try await post(client, "/v1/chat/completions", request + #", "stream": true}"#)
            let payloads = events(streamed)
            let chunks = try payloads.dropLast().map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            XCTAssertGreaterThanOrEqual(chunks.count, 3)
            let first = try XCTUnwrap((chunks[0]["choices"] as? [[String: Any]])?.first)
            XCTAssertEqual((first["delta"] as? [String: Any])?["role"] as? String, "assistant")
            var text = ""
            for chunk in chunks {
                XCTAssertEqual(chunk["object"] as? String, "chat.completion.chunk")
                XCTAssertEqual(Set(chunk.keys), ["id", "object", "created", "model", "choices"])
                let choice = try XCTUnwrap((chunk["choices"] as? [[String: Any]])?.first)
                XCTAssertEqual(Set(choice.keys), ["index", "delta", "logprobs", "finish_reason"])
                text += (choice["delta"] as? [String: Any])?["content"] as? String ?? ""
            }
            XCTAssertEqual(text, content)
            XCTAssertEqual((chunks.last?["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String, "length")
        }
    }

    func testChatDefaultMaxTokensIsTheRestOfTheContextAndLogprobs() async throws {
        let router = try makeRouter(contextLength: 48)
        try await app(router).test(.router) { client in
            let json = try object(try await post(client, "/v1/chat/completions",
                #"{"messages": [{"role": "user", "content": "Hi"}], "ignore_eos": true, "logprobs": true, "top_logprobs": 2}"#))
            let usage = try XCTUnwrap(json["usage"] as? [String: Int])
            XCTAssertEqual(usage["total_tokens"], 48)
            let choice = try XCTUnwrap((json["choices"] as? [[String: Any]])?.first)
            let content = try XCTUnwrap((choice["logprobs"] as? [String: Any])?["content"] as? [[String: Any]])
            XCTAssertEqual(content.count, usage["completion_tokens"])
            XCTAssertEqual(Set(content[0].keys), ["token", "logprob", "bytes", "top_logprobs"])
            XCTAssertEqual((content[0]["top_logprobs"] as? [Any])?.count, 2)
        }
    }

    func testStopString() async throws {
        let router = try makeRouter()
        try await app(router).test(.router) { client in
            let whole = try object(try await post(client, "/v1/completions",
                #"{"prompt": "Once", "max_tokens": 20, "temperature": 0, "ignore_eos": true}"#))
            let text = try XCTUnwrap((whole["choices"] as? [[String: Any]])?.first?["text"] as? String)
            let chars = Array(text)
            guard chars.count > 6 else { throw XCTSkip("completion too short") }
            let stop = String(chars[4...5])
            let stopped = try object(try await post(client, "/v1/completions",
                #"{"prompt": "Once", "max_tokens": 20, "temperature": 0, "ignore_eos": true, "stop": [\#(String(data: try JSONSerialization.data(withJSONObject: [stop], options: .fragmentsAllowed), encoding: .utf8)!.dropFirst().dropLast())]}"#))
            let choice = try XCTUnwrap((stopped["choices"] as? [[String: Any]])?.first)
            XCTAssertEqual(choice["text"] as? String, String(text[..<text.range(of: stop)!.lowerBound]))
            XCTAssertEqual(choice["finish_reason"] as? String, "stop")
        }
    }

    // MARK: Models, health

    func testModelsAndHealth() async throws {
        let router = try makeRouter()
        try await app(router).test(.router) { client in
            let models = try await client.execute(uri: "/v1/models", method: .get)
            let json = try object(models)
            XCTAssertEqual(json["object"] as? String, "list")
            let data = try XCTUnwrap(json["data"] as? [[String: Any]])
            XCTAssertEqual(data.first?["id"] as? String, "tiny")
            XCTAssertEqual(data.first?["object"] as? String, "model")
            let health = try await client.execute(uri: "/health", method: .get)
            XCTAssertEqual(health.status, .ok)
            await stage1.stop()
            let down = try await client.execute(uri: "/health", method: .get)
            XCTAssertEqual(down.status, .serviceUnavailable)
            XCTAssertTrue(String(buffer: down.body).contains("layers 1-3"), String(buffer: down.body))
        }
    }

    // MARK: Errors

    func testErrorStatuses() async throws {
        let router = try makeRouter(apiKey: "sekrit")
        let auth: HTTPFields = [.contentType: "application/json", .authorization: "Bearer sekrit"]
        try await app(router).test(.router) { client in
            try assertError(try await post(client, "/v1/completions", #"{"prompt": "x"}"#), .unauthorized)
            try assertError(try await post(client, "/v1/completions", #"{"prompt": "x"}"#,
                                           headers: [.authorization: "Bearer wrong"]), .unauthorized)
            try assertError(try await client.execute(uri: "/v1/models", method: .get), .unauthorized)
            let authorized = try await client.execute(uri: "/v1/models", method: .get, headers: auth)
            XCTAssertEqual(authorized.status, .ok)
            try assertError(try await post(client, "/v1/completions", #"{"prompt": "x""#, headers: auth), .badRequest)
            try assertError(try await post(client, "/v1/completions", #"[1]"#, headers: auth), .badRequest)
            try assertError(try await post(client, "/v1/completions", #"{"max_tokens": 3}"#, headers: auth), .badRequest, param: "prompt")
            try assertError(try await post(client, "/v1/completions", #"{"prompt": "x", "temperature": "hot"}"#, headers: auth), .badRequest, param: "temperature")
            try assertError(try await post(client, "/v1/completions", #"{"prompt": "x", "temperature": 3}"#, headers: auth), .badRequest, param: "temperature")
            try assertError(try await post(client, "/v1/completions", #"{"prompt": "x", "n": 2}"#, headers: auth), .badRequest, param: "n")
            try assertError(try await post(client, "/v1/completions", #"{"prompt": "x", "max_tokens": 0}"#, headers: auth), .badRequest, param: "max_tokens")
            try assertError(try await post(client, "/v1/completions", #"{"prompt": "x", "stop": 5}"#, headers: auth), .badRequest, param: "stop")
            try assertError(try await post(client, "/v1/completions", #"{"prompt": "x", "top_p": 0}"#, headers: auth), .badRequest, param: "top_p")
            try assertError(try await post(client, "/v1/completions", #"{"prompt": ["a", "b"]}"#, headers: auth), .badRequest, param: "prompt")
            try assertError(try await post(client, "/v1/chat/completions", #"{"messages": []}"#, headers: auth), .badRequest, param: "messages")
            try assertError(try await post(client, "/v1/chat/completions", #"{"messages": [{"role": "robot", "content": "x"}]}"#, headers: auth), .badRequest)
            try assertError(try await post(client, "/v1/chat/completions", #"{"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}"#, headers: auth), .badRequest, param: "top_logprobs")
            try assertError(try await post(client, "/v1/completions", #"{"model": "gpt-4", "prompt": "x"}"#, headers: auth), .notFound, param: "model")
            let long = String(repeating: "word ", count: 400)
            try assertError(try await post(client, "/v1/completions", #"{"prompt": "\#(long)"}"#, headers: auth), .badRequest, param: "prompt")
            try assertError(try await post(client, "/v1/completions", #"{"prompt": "x", "max_tokens": 300}"#, headers: auth), .badRequest, param: "max_tokens")
            try assertError(try await client.execute(uri: "/v1/nothing", method: .get, headers: auth), .notFound)
        }
    }

    func testOverloadedGives429WithRetryAfter() async throws {
        let router = try makeRouter(maxWaiting: 0, maxBatch: 1)
        // Two lanes of one sequence each are full, and nobody may wait.
        var streams: [AsyncThrowingStream<GenerationEvent, Error>] = []
        for _ in 0..<2 {
            streams.append(try await router.scheduler.submit(ClusterGenerationRequest(prompt: [2, 100, 101], maxTokens: 200)))
        }
        try await app(router).test(.router) { client in
            let response = try await post(client, "/v1/completions", #"{"prompt": "x"}"#)
            try assertError(response, .tooManyRequests)
            XCTAssertNotNil(response.headers[.retryAfter].flatMap(Int.init))
        }
        streams.removeAll()
    }

    func testPipelineDownGives503() async throws {
        let router = try makeRouter(recoverySeconds: 1)
        await stage1.stop()
        try await app(router).test(.router) { client in
            try assertError(try await post(client, "/v1/completions", #"{"prompt": "x", "max_tokens": 4}"#), .serviceUnavailable)
        }
    }

    // MARK: Disconnect

    /// A client that goes away mid-stream ends the completion on every stage.
    func testClientDisconnectReleasesTheSequence() async throws {
        let router = try makeRouter()
        let app = Application(router: router.buildRouter(),
                              configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: Self.quiet("app"))
        try await app.test(.live) { client in
            let port = try XCTUnwrap(client.port)
            let socket = try RawSocket(port: port)
            let body = #"{"prompt": "Once", "max_tokens": 200, "ignore_eos": true, "stream": true}"#
            try socket.send("POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
            let head = try socket.receive()
            XCTAssertTrue(head.contains("200"), head)
            var total = head
            while !total.contains("\"text\"") { total += try socket.receive() }
            XCTAssertGreaterThan(self.stage1.shard!.info().activeSequences, 0)
            socket.close()
            let deadline = ContinuousClock.now + .seconds(5)
            while ContinuousClock.now < deadline,
                  self.stage0.shard!.info().activeSequences + self.stage1.shard!.info().activeSequences > 0 {
                try await Task.sleep(for: .milliseconds(20))
            }
            XCTAssertEqual(self.stage0.shard!.info().activeSequences, 0)
            XCTAssertEqual(self.stage1.shard!.info().activeSequences, 0)
            let counts = await router.scheduler.counts
            XCTAssertEqual(counts.running + counts.waiting, 0)
        }
    }
}

/// A blocking TCP client socket on 127.0.0.1 (to hang up mid-response).
final class RawSocket {
    let fd: Int32

    init(port: Int) throws {
        #if canImport(Glibc)
        fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        fd = Darwin.socket(AF_INET, SOCK_STREAM, 0)
        #endif
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw POSIXError(.EPIPE) }
            sent += n
        }
    }

    func receive() throws -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &buffer, buffer.count)
        guard n > 0 else { throw POSIXError(.ECONNRESET) }
        return String(decoding: buffer[..<n], as: UTF8.self)
    }

    func close() {
        #if canImport(Glibc)
        _ = Glibc.close(fd)
        #else
        _ = Darwin.close(fd)
        #endif
    }
}
