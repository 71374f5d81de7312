import Foundation
import GemmaCluster
import GemmaWire
import Hummingbird
import Logging

/// The router's HTTP front: OpenAI's completions, chat completions and models endpoints over a
/// `PipelineScheduler`, plus /health and /metrics (Prometheus).
///
/// Prompts are tokenized (with BOS) and chat conversations rendered by the tokenizer service;
/// generation stops at the tokenizer's stop ids (eos, end_of_turn) unless `ignore_eos`.
public final class OpenAIRouter: Sendable {
    public struct Configuration: Sendable {
        public var modelName: String
        /// When set, /v1 requests must carry `Authorization: Bearer <apiKey>`.
        public var apiKey: String?
        /// Seed of requests that give none, so that results are reproducible.
        public var defaultSeed: UInt64 = 0
        /// Deadline of one tokenizer call.
        public var tokenizerTimeout: Duration = .seconds(10)
        /// How long a /health answer is reused.
        public var healthCacheSeconds: Double = 1
        /// A connection that sends nothing for this long, between requests or in the middle of
        /// one (a stalled, half-sent body), is closed.
        public var idleTimeoutSeconds: Int64 = 30

        public init(modelName: String, apiKey: String? = nil) {
            self.modelName = modelName
            self.apiKey = apiKey
        }
    }

    public let scheduler: PipelineScheduler
    public let configuration: Configuration
    public let metrics: RouterMetrics
    let tokenizer: RPCClient
    let stages: [[RPCClient]]
    let stageLayers: [String]
    let contextLength: Int
    let logger: Logger
    let state = RouterState()
    let created = Int(Date().timeIntervalSince1970)

    /// - Parameters:
    ///   - cluster: the config the scheduler runs (stage names, context length).
    ///   - stages: the clients of every replica of every stage (for /health).
    ///   - contextLength: the scheduler's context length.
    public init(scheduler: PipelineScheduler, cluster: ClusterConfig, tokenizer: RPCClient, stages: [[RPCClient]],
                contextLength: Int, configuration: Configuration, logger: Logger = Logger(label: "gemma.router.http")) {
        self.scheduler = scheduler
        self.tokenizer = tokenizer
        self.stages = stages
        self.stageLayers = cluster.stages.map(\.layers)
        self.configuration = configuration
        self.contextLength = contextLength
        self.logger = logger
        metrics = RouterMetrics(modelName: configuration.modelName)
    }

    /// The HTTP routes.
    public func buildRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: OpenAIErrorMiddleware())
        router.get("/health") { _, _ in try await self.health() }
        router.get("/metrics") { _, _ in await self.metricsResponse() }
        router.get("/v1/models") { request, _ in
            try self.authorize(request)
            return self.jsonResponse(.object([("object", .string("list")), ("data", .array([self.modelObject]))]))
        }
        router.get("/v1/models/{id}") { request, context in
            try self.authorize(request)
            guard context.parameters.get("id") == self.configuration.modelName else {
                throw OpenAIError(.notFound, "The model '\((context.parameters.get("id") ?? "").boundedForLog())' does not exist",
                                  param: "model", code: "model_not_found")
            }
            return self.jsonResponse(self.modelObject)
        }
        router.post("/v1/completions") { request, context in
            try await self.complete(request, context: context, chat: false)
        }
        router.post("/v1/chat/completions") { request, context in
            try await self.complete(request, context: context, chat: true)
        }
        return router
    }

    /// An application serving `buildRouter()` on host:port.
    public func application(host: String, port: Int) -> some ApplicationProtocol {
        Application(router: buildRouter(),
                    server: .http1(configuration: .init(idleTimeout: .seconds(configuration.idleTimeoutSeconds))),
                    configuration: .init(address: .hostname(host, port: port), serverName: "gemma-router"),
                    logger: logger)
    }

    var modelObject: JSONValue {
        .object([("id", .string(configuration.modelName)), ("object", .string("model")),
                 ("created", .int(created)), ("owned_by", .string("gemmaserve")),
                 ("max_model_len", .int(contextLength))])
    }

    func jsonResponse(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: value.serialized)))
    }

    func authorize(_ request: Request) throws {
        guard let key = configuration.apiKey else { return }
        let header = request.headers[.authorization] ?? ""
        guard header.hasPrefix("Bearer "), header.dropFirst("Bearer ".count).trimmingCharacters(in: .whitespaces) == key else {
            throw OpenAIError(.unauthorized, header.isEmpty
                ? "You didn't provide an API key. Provide it in the Authorization header (Authorization: Bearer YOUR_KEY)."
                : "Incorrect API key provided.", code: "invalid_api_key")
        }
    }

    // MARK: Health

    func health() async throws -> Response {
        let (healthy, problem) = await state.health(maxAge: configuration.healthCacheSeconds) {
            await self.probe()
        }
        if healthy { return jsonResponse(.object([("status", .string("ok"))])) }
        return jsonResponse(OpenAIError(.serviceUnavailable, problem, type: "service_unavailable").json,
                            status: .serviceUnavailable)
    }

    /// Info on the tokenizer and on every replica of every stage: healthy when the tokenizer and
    /// at least one replica of each stage answer.
    func probe() async -> (Bool, String) {
        let timeout = Duration.seconds(1)
        let tokenizer = self.tokenizer
        async let tokenizerOK: Bool = {
            do { _ = try await tokenizer.call(TokenizerRPC.info, .init(), timeout: timeout); return true } catch { return false }
        }()
        var problems: [String] = []
        await withTaskGroup(of: (Int, Bool).self) { group in
            for (i, replicas) in stages.enumerated() {
                group.addTask {
                    for replica in replicas {
                        if (try? await replica.call(ShardRPC.info, .init(), timeout: timeout)) != nil { return (i, true) }
                    }
                    return (i, false)
                }
            }
            for await (i, ok) in group where !ok {
                problems.append("no replica of stage \(i) (layers \(stageLayers[i])) answers")
            }
        }
        if !(await tokenizerOK) { problems.insert("the tokenizer does not answer", at: 0) }
        return (problems.isEmpty, problems.joined(separator: "; "))
    }

    // MARK: Metrics

    func metricsResponse() async -> Response {
        let counts = await scheduler.counts
        let kv = await scheduler.kvReservation
        let samples = await withTaskGroup(of: RouterMetrics.StageSample.self) { group in
            for (s, replicas) in stages.enumerated() {
                for (r, client) in replicas.enumerated() {
                    group.addTask {
                        guard let info = try? await client.call(ShardRPC.info, .init(), timeout: .milliseconds(500)) else {
                            return .init(stage: s, replica: r, usedBytes: 0, capacityBytes: 0, up: false)
                        }
                        return .init(stage: s, replica: r, usedBytes: info.kvUsedBytes, capacityBytes: info.kvCapacityBytes, up: true)
                    }
                }
            }
            var all: [RouterMetrics.StageSample] = []
            for await sample in group { all.append(sample) }
            return all.sorted { ($0.stage, $0.replica) < ($1.stage, $1.replica) }
        }
        let text = metrics.render(running: counts.running, waiting: counts.waiting, kvReserved: kv.reserved,
                                  kvCapacity: kv.capacity, stages: samples)
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    // MARK: Completions

    func tokenizerInfo() async throws -> Gemma_V1_TokenizerInfo {
        if let info = await state.tokenizerInfo { return info }
        let info = try await tokenizer.call(TokenizerRPC.info, .init(), timeout: configuration.tokenizerTimeout)
        await state.setTokenizerInfo(info)
        return info
    }

    func complete(_ request: Request, context: BasicRequestContext, chat: Bool) async throws -> Response {
        let promptParam = chat ? "messages" : "prompt"
        let clock = metrics.startRequest()
        do {
            try authorize(request)
            let json = try await Self.readJSONBody(request)
            let params = try CompletionParameters(json, chat: chat, modelName: configuration.modelName)
            let info = try await tokenizerInfo()
            let prompt: [Int32]
            switch params.prompt {
            case let .ids(ids):
                prompt = ids
            case let .text(text):
                var encode = Gemma_V1_EncodeRequest()
                encode.texts = [text]
                encode.addBos = true
                prompt = try await tokenizer.call(TokenizerRPC.encode, encode, timeout: configuration.tokenizerTimeout).sequences.first?.ids ?? []
            case let .messages(messages):
                var apply = Gemma_V1_ApplyChatTemplateRequest()
                apply.messages = messages.map { message in
                    var m = Gemma_V1_ChatMessage()
                    m.role = message.role
                    m.content = message.content
                    return m
                }
                apply.addGenerationPrompt = true
                prompt = try await tokenizer.call(TokenizerRPC.applyChatTemplate, apply, timeout: configuration.tokenizerTimeout).ids
            }
            if let id = prompt.first(where: { $0 < 0 || UInt32($0) >= info.vocabSize }) {
                throw OpenAIError.invalid(promptParam, "Token id \(id) is outside the vocabulary (0..<\(info.vocabSize)).")
            }
            guard prompt.count < contextLength else {
                throw OpenAIError(.badRequest, "This model's maximum context length is \(contextLength) tokens. However, your \(chat ? "messages" : "prompt") resulted in \(prompt.count) tokens.",
                                  param: promptParam, code: "context_length_exceeded")
            }
            let maxTokens = params.maxTokens ?? (chat ? contextLength - prompt.count : 16)
            // maxTokens is at most RequestLimits.maxTokens, but never trust a sum of request values.
            let (total, overflow) = prompt.count.addingReportingOverflow(maxTokens)
            if overflow || total > contextLength {
                throw OpenAIError(.badRequest, "This model's maximum context length is \(contextLength) tokens. However, you requested \(overflow ? "more than \(Int.max)" : String(total)) tokens (\(prompt.count) in the \(chat ? "messages" : "prompt"), \(maxTokens) in the completion). Please reduce the length of the \(chat ? "messages" : "prompt") or completion.",
                                  param: params.maxTokensParam, code: "context_length_exceeded")
            }
            var sampling = Gemma_V1_SamplingParams()
            sampling.temperature = Float(params.temperature)
            sampling.topP = Float(params.topP)
            sampling.topK = UInt32(clamping: params.topK)
            sampling.seed = params.seed ?? configuration.defaultSeed
            let generation = ClusterGenerationRequest(
                prompt: prompt, sampling: sampling, maxTokens: maxTokens,
                stopTokens: params.ignoreEOS ? [] : Set(info.stopIds), stopStrings: params.stop,
                logprobs: params.logprobs != nil, topLogprobs: params.logprobs ?? 0)
            let stream = try await scheduler.submit(generation)
            let events = EventSource(stream, clock: clock)
            let meta = ResponseMeta(id: (chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased(),
                                    created: Int(Date().timeIntervalSince1970), model: configuration.modelName, chat: chat)
            // Wait for the first event, so that a failure before any token gets its HTTP status.
            let first = try await events.next()
            if params.stream {
                return streamingResponse(meta: meta, params: params, first: first, events: events)
            }
            return try await wholeResponse(meta: meta, params: params, first: first, events: events)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw OpenAIError.from(error, promptParam: promptParam)
        }
    }

    func wholeResponse(meta: ResponseMeta, params: CompletionParameters, first: GenerationEvent?,
                       events: EventSource) async throws -> Response {
        var text = ""
        var tokens: [GeneratedToken] = []
        var finish = ClusterFinishReason.stop
        var usage = (prompt: 0, completion: 0)
        var event = first
        while let current = event {
            switch current {
            case let .delta(delta, generated):
                text += delta
                tokens += generated
            case let .finished(reason, promptTokens, completionTokens):
                finish = reason
                usage = (promptTokens, completionTokens)
            }
            event = try await events.next()
        }
        let logprobs = params.logprobs == nil ? JSONValue.null : try await logprobsJSON(tokens, chat: meta.chat)
        let choice: JSONValue = meta.chat
            ? .object([("index", .int(0)),
                       ("message", .object([("role", .string("assistant")), ("content", .string(text))])),
                       ("logprobs", logprobs), ("finish_reason", .string(finish.rawValue))])
            : .object([("index", .int(0)), ("text", .string(text)), ("logprobs", logprobs),
                       ("finish_reason", .string(finish.rawValue))])
        return jsonResponse(.object(meta.header(object: meta.chat ? "chat.completion" : "text_completion") + [
            ("choices", .array([choice])),
            ("usage", usageJSON(usage.prompt, usage.completion)),
        ]))
    }

    func usageJSON(_ prompt: Int, _ completion: Int) -> JSONValue {
        .object([("prompt_tokens", .int(prompt)), ("completion_tokens", .int(completion)),
                 ("total_tokens", .int(prompt + completion))])
    }

    func streamingResponse(meta: ResponseMeta, params: CompletionParameters, first: GenerationEvent?,
                           events: EventSource) -> Response {
        let includeUsage = params.includeUsage
        let body = ResponseBody { writer in
            func send(_ value: JSONValue) async throws {
                try await writer.write(ByteBuffer(string: "data: \(value.serialized)\n\n"))
            }
            func chunk(delta: JSONValue?, text: String?, logprobs: JSONValue, finish: ClusterFinishReason?) -> JSONValue {
                var choice: [(String, JSONValue)] = [("index", .int(0))]
                if meta.chat { choice.append(("delta", delta ?? .object([]))) } else { choice.append(("text", .string(text ?? ""))) }
                choice.append(("logprobs", logprobs))
                choice.append(("finish_reason", finish.map { .string($0.rawValue) } ?? .null))
                var fields = meta.header(object: meta.chat ? "chat.completion.chunk" : "text_completion")
                fields.append(("choices", .array([.object(choice)])))
                if includeUsage { fields.append(("usage", .null)) }
                return .object(fields)
            }
            do {
                if meta.chat {
                    try await send(chunk(delta: .object([("role", .string("assistant")), ("content", .string(""))]),
                                         text: nil, logprobs: .null, finish: nil))
                }
                var event = first
                while let current = event {
                    switch current {
                    case let .delta(text, tokens):
                        let logprobs = params.logprobs == nil ? JSONValue.null : try await self.logprobsJSON(tokens, chat: meta.chat)
                        try await send(chunk(delta: .object([("content", .string(text))]), text: text,
                                             logprobs: logprobs, finish: nil))
                    case let .finished(reason, promptTokens, completionTokens):
                        try await send(chunk(delta: .object([]), text: "", logprobs: .null, finish: reason))
                        if includeUsage {
                            try await send(.object(meta.header(object: meta.chat ? "chat.completion.chunk" : "text_completion") + [
                                ("choices", .array([])), ("usage", self.usageJSON(promptTokens, completionTokens)),
                            ]))
                        }
                    }
                    event = try await events.next()
                }
            } catch let error where !(error is CancellationError) && (error is ClusterError || error is RPCError) {
                // The pipeline failed after the headers went out: tell the client in the stream.
                try await send(OpenAIError.from(error, promptParam: meta.chat ? "messages" : "prompt").json)
            }
            // A failed write (the client went away) ends here too: `events` goes with this
            // closure, which ends the scheduler's stream and releases the sequence on every stage.
            events.cancel()
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        }
        return Response(status: .ok,
                        headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                        body: body)
    }

    /// OpenAI's logprobs object for generated tokens (chat: `content`; completions: the legacy arrays).
    func logprobsJSON(_ tokens: [GeneratedToken], chat: Bool) async throws -> JSONValue {
        var ids: [Int32] = []
        for token in tokens {
            ids.append(token.token)
            ids += token.topLogprobs.map(\.token)
        }
        let strings = try await tokenStrings(Array(Set(ids)))
        func piece(_ id: Int32) -> String { strings[id] ?? "" }
        func number(_ value: Float?) -> JSONValue {
            guard let value else { return .null }
            return .double(value.isFinite ? Double(value) : -9999.0)
        }
        if chat {
            return .object([("content", .array(tokens.map { token in
                .object([
                    ("token", .string(piece(token.token))), ("logprob", number(token.logprob)),
                    ("bytes", .array(Array(piece(token.token).utf8).map { .int(Int($0)) })),
                    ("top_logprobs", .array(token.topLogprobs.map { top in
                        .object([("token", .string(piece(top.token))), ("logprob", number(top.logprob)),
                                 ("bytes", .array(Array(piece(top.token).utf8).map { .int(Int($0)) }))])
                    })),
                ])
            })), ("refusal", .null)])
        }
        var offset = 0
        var offsets: [JSONValue] = []
        for token in tokens {
            offsets.append(.int(offset))
            offset += piece(token.token).count
        }
        return .object([
            ("tokens", .array(tokens.map { .string(piece($0.token)) })),
            ("token_logprobs", .array(tokens.map { number($0.logprob) })),
            ("top_logprobs", .array(tokens.map { token in
                var seen = Set<String>()
                return .object(token.topLogprobs.compactMap { top in
                    let key = piece(top.token)
                    return seen.insert(key).inserted ? (key, number(top.logprob)) : nil
                })
            })),
            ("text_offset", .array(offsets)),
        ])
    }

    /// Each id's text as it reads inside a completion (a leading "▁" is a space), one batched call.
    func tokenStrings(_ ids: [Int32]) async throws -> [Int32: String] {
        guard !ids.isEmpty else { return [:] }
        var request = Gemma_V1_DetokenizeRequest()
        request.sequences = ids.enumerated().map { i, id in
            var sequence = Gemma_V1_DetokenizeSequence()
            sequence.sequenceID = UInt64(i)
            sequence.tokenIds = [id]
            sequence.started = true
            sequence.finish = true
            return sequence
        }
        let reply = try await tokenizer.call(TokenizerRPC.detokenize, request, timeout: configuration.tokenizerTimeout)
        var strings: [Int32: String] = [:]
        // The tokenizer's reply is input too: an id past ours (even past Int.max) is skipped, not trapped on.
        for result in reply.sequences where result.sequenceID < UInt64(ids.count) {
            strings[ids[Int(result.sequenceID)]] = result.text
        }
        return strings
    }
}

/// What every response and chunk of one request shares.
struct ResponseMeta: Sendable {
    let id: String
    let created: Int
    let model: String
    let chat: Bool

    func header(object: String) -> [(String, JSONValue)] {
        [("id", .string(id)), ("object", .string(object)), ("created", .int(created)), ("model", .string(model))]
    }
}

/// The scheduler's stream, read from whichever task serves the response. Dropping or
/// cancelling it ends the stream, which cancels the completion on every stage.
final class EventSource: @unchecked Sendable {
    private var iterator: AsyncThrowingStream<GenerationEvent, Error>.AsyncIterator?
    private let clock: RouterMetrics.RequestClock?

    init(_ stream: AsyncThrowingStream<GenerationEvent, Error>, clock: RouterMetrics.RequestClock? = nil) {
        iterator = stream.makeAsyncIterator()
        self.clock = clock
    }

    func next() async throws -> GenerationEvent? {
        guard iterator != nil else { return nil }
        do {
            let event = try await iterator!.next()
            if let event { clock?.record(event) }
            return event
        } catch {
            if !(error is CancellationError) { clock?.fail() }
            throw error
        }
    }

    /// Lets go of the stream (its termination handler cancels the completion).
    func cancel() {
        iterator = nil
    }
}

/// Cached answers: the tokenizer's Info and the last health probe.
actor RouterState {
    var tokenizerInfo: Gemma_V1_TokenizerInfo?
    var lastHealth: (at: ContinuousClock.Instant, healthy: Bool, problem: String)?

    func setTokenizerInfo(_ info: Gemma_V1_TokenizerInfo) { tokenizerInfo = info }

    func health(maxAge: Double, probe: @Sendable () async -> (Bool, String)) async -> (Bool, String) {
        if let last = lastHealth, ContinuousClock.now - last.at < .milliseconds(Int64(maxAge * 1000)) {
            return (last.healthy, last.problem)
        }
        let (healthy, problem) = await probe()
        lastHealth = (ContinuousClock.now, healthy, problem)
        return (healthy, problem)
    }
}
