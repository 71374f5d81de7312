import Foundation
import GemmaModel
import GemmaShard
import GemmaShardService
@testable import GemmaWire
import Logging
import GemmaTestSupport
import XCTest

/// Paths, models and helpers shared by the shard tests.
enum ShardFixtures {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // GemmaShardTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    static let tinyMQA = packageRoot.appendingPathComponent("Tests/Fixtures/models/tiny-mqa").path
    static let tinyGQA = packageRoot.appendingPathComponent("Tests/Fixtures/models/tiny-gqa").path
    static let shakespeare = packageRoot.appendingPathComponent("Models/tiny-shakespeare").path

    /// One prompt of tiny-mqa's `reference.json`: tokens and transformers' greedy continuation.
    struct ReferencePrompt {
        let tokens: [Int32]
        let greedyContinuation: [Int32]
    }

    static func reference() throws -> [ReferencePrompt] {
        let url = URL(fileURLWithPath: tinyMQA).appendingPathComponent("reference.json")
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let prompts = try XCTUnwrap(json["prompts"] as? [[String: Any]])
        return try prompts.map { prompt in
            ReferencePrompt(tokens: try XCTUnwrap(prompt["tokens"] as? [Int]).map(Int32.init),
                            greedyContinuation: try XCTUnwrap(prompt["greedy_continuation"] as? [Int]).map(Int32.init))
        }
    }

    private static let counter = Counter()

    /// A fresh inproc:// address.
    static func inprocURL(_ name: String) -> String {
        "inproc://gemma-shard-\(name)-\(counter.next())"
    }

    /// A fresh ipc:// address in the temporary folder.
    static func ipcURL(_ name: String) -> String {
        "ipc://\(NSTemporaryDirectory())gemma-shard-\(getpid())-\(name)-\(counter.next()).ipc"
    }

    /// A logger that keeps test output quiet (warnings and worse).
    static func logger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = .warning
        return logger
    }
}

/// A ShardService for a layer range, served by an RPCServer in a task of the test.
final class RunningShard: @unchecked Sendable {
    let service: ShardService
    let server: RPCServer
    let task: Task<Void, Error>
    let client: RPCClient

    init(model: String, layers: Range<Int>?, kvCacheBytes: Int = 64 << 20, url: String? = nil) throws {
        let engine = try ShardEngine(modelPath: model, layers: layers,
                                     configuration: .init(kvCacheBytes: kvCacheBytes))
        service = ShardService(engine: engine, logger: ShardFixtures.logger("test.shard"))
        server = RPCServer(url: url ?? ShardFixtures.inprocURL("stage"), logger: ShardFixtures.logger("test.server"))
        service.register(on: server)
        try server.start()
        let server = self.server
        task = Task { try await server.run() }
        client = try RPCClient(url: server.boundURLs[0], configuration: .init(retry: .never))
    }

    func info() async throws -> Gemma_V1_ShardInfo {
        try await client.call(ShardRPC.info, Gemma_V1_ShardInfoRequest(), timeout: .seconds(10))
    }

    func forward(_ request: Gemma_V1_ForwardRequest) async throws -> Gemma_V1_ForwardReply {
        try await client.call(ShardRPC.forward, request, timeout: .seconds(60))
    }

    func release(_ ids: [UInt64]) async throws -> UInt32 {
        var request = Gemma_V1_ReleaseRequest()
        request.sequenceIds = ids
        return try await client.call(ShardRPC.release, request, timeout: .seconds(10)).released
    }

    func stop() async {
        client.close()
        task.cancel()
        _ = await task.result
        service.shutdown()
    }
}

/// A segment for the wire.
func wireSegment(_ id: UInt64, start: Int, tokens: [Int32] = [], hidden: Gemma_V1_Tensor? = nil,
                 sampling: SamplingParameters = .greedy, logprobs: Bool = false, top: Int = 0) -> Gemma_V1_Segment {
    var segment = Gemma_V1_Segment()
    segment.sequenceID = id
    segment.startPosition = UInt32(start)
    segment.tokens = tokens
    if let hidden { segment.hidden = hidden }
    var params = Gemma_V1_SamplingParams()
    params.temperature = sampling.temperature
    params.topK = UInt32(sampling.topK)
    params.topP = sampling.topP
    params.seed = sampling.seed
    segment.sampling = params
    segment.wantLogprobs = logprobs
    segment.topLogprobs = UInt32(top)
    return segment
}

/// What one step of one sequence sends through the pipeline.
struct PipelineStep {
    var id: UInt64
    var start: Int
    var tokens: [Int32]
    var sampling: SamplingParameters = .greedy
    var logprobs = false
    var top = 0
}

/// A router in miniature: token segments through the first stage, its hidden states split per
/// segment into the next stage, and so on; the last stage's sampled tokens back.
struct TestPipeline {
    let stages: [RunningShard]
    let hiddenDType: Gemma_V1_Tensor.DType

    func step(_ steps: [PipelineStep]) async throws -> [Gemma_V1_SampledToken] {
        var request = Gemma_V1_ForwardRequest()
        request.hiddenDtype = hiddenDType
        request.segments = steps.map { wireSegment($0.id, start: $0.start, tokens: $0.tokens, sampling: $0.sampling,
                                                   logprobs: $0.logprobs, top: $0.top) }
        for (index, stage) in stages.enumerated() {
            let reply = try await stage.forward(request)
            if index == stages.count - 1 {
                guard case .sampled(let sampled) = reply.result else {
                    throw ShardTestError("the last stage returned no tokens")
                }
                return sampled.tokens
            }
            guard case .hidden(let hidden) = reply.result else {
                throw ShardTestError("stage \(index) returned no hidden states")
            }
            let width = hidden.dtype == .f32 ? 4 : 2
            let columns = Int(hidden.shape[1])
            var row = 0
            for s in request.segments.indices {
                let rows = steps[s].tokens.count
                var tensor = Gemma_V1_Tensor()
                tensor.dtype = hidden.dtype
                tensor.shape = [UInt64(rows), UInt64(columns)]
                let begin = hidden.data.startIndex + row * columns * width
                tensor.data = hidden.data.subdata(in: begin ..< begin + rows * columns * width)
                request.segments[s].tokens = []
                request.segments[s].hidden = tensor
                row += rows
            }
            XCTAssertEqual(row, Int(hidden.shape[0]))
        }
        throw ShardTestError("no stages")
    }

    /// Prefills every prompt in one batch, then decodes all of them token by token, batched.
    func generate(_ prompts: [(id: UInt64, tokens: [Int32])], count: Int,
                  sampling: SamplingParameters = .greedy) async throws -> [[Int32]] {
        var generated = [[Int32]](repeating: [], count: prompts.count)
        var next = try await step(prompts.map { PipelineStep(id: $0.id, start: 0, tokens: $0.tokens, sampling: sampling) })
        for _ in 0 ..< count {
            for (i, token) in next.enumerated() {
                XCTAssertEqual(token.sequenceID, prompts[i].id)
                generated[i].append(token.token)
            }
            if generated[0].count == count { break }
            next = try await step(prompts.indices.map { i in
                PipelineStep(id: prompts[i].id, start: prompts[i].tokens.count + generated[i].count - 1,
                             tokens: [generated[i].last!], sampling: sampling)
            })
        }
        return generated
    }
}

struct ShardTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension XCTestCase {
    /// Asserts that `body` throws `ShardError` and returns it.
    @discardableResult
    func assertShardError<T>(file: StaticString = #filePath, line: UInt = #line,
                             _ body: () throws -> T) -> ShardError? {
        do {
            _ = try body()
            XCTFail("expected a ShardError, got a result", file: file, line: line)
            return nil
        } catch let error as ShardError {
            return error
        } catch {
            XCTFail("expected a ShardError, got \(error)", file: file, line: line)
            return nil
        }
    }
}

