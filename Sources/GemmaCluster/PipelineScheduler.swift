import Foundation
import GemmaWire
import Logging

/// The router's engine: continuous batching of completions over a pipeline of shard stages.
///
/// Running sequences are spread over `lanes` micro-batches, at least one per stage, and every
/// lane runs its batch through all stages in turn, so while one lane's batch is at stage 1 the
/// next lane's can be at stage 0 and every stage computes. Requests join a lane and leave it at
/// step boundaries. Each lane pins one replica of every stage (a sequence's KV cache lives
/// there); when a stage fails, the lane moves to another replica, or waits for the stage to
/// come back, and re-prefills each sequence's history (prompt plus generated tokens), which the
/// stages accept idempotently. Sampling depends only on the seed and the position, so the text
/// is the same as an undisturbed run's. Past `recoverySeconds` the clients get an error and
/// every stage is told to release their sequences.
///
/// Admission: a sequence reserves its whole length (prompt plus max_tokens, within the
/// context) of KV cache on every stage when it starts running, and the stages allocate exactly
/// that (`Segment.reserve_positions`), so the running sequences always fit the smallest stage's
/// cache. Requests that do not fit yet wait, first come first served; past
/// `maxWaitingRequests` waiting, new ones are refused with `overloaded` (HTTP 429).
public actor PipelineScheduler {
    /// A completion in progress.
    struct Sequence {
        let id: UInt64
        let request: ClusterGenerationRequest
        let continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation
        var history: [Int32]
        /// Positions of KV cache it holds on every stage while running.
        let reservation: Int
        var generated = 0
        /// Positions the stages of its lane hold for it.
        var cached = 0
        var lane = -1
        var inFlight = false
        var cancelled = false
        /// Incremental detokenizer state (stateless tokenizer service).
        var pending = Data()
        var started = false
        /// Text not yet sent because it may be the start of a stop string.
        var heldBack = ""
    }

    /// One sequence's part of a micro-batch.
    struct Entry: Sendable {
        let id: UInt64
        let start: Int
        let tokens: [Int32]
        /// The segment reaches the end of the history, so its sampled token is the next one.
        let samplesNext: Bool
        let sampling: Gemma_V1_SamplingParams
        let logprobs: Bool
        let topLogprobs: Int
        let stopTokens: Set<Int32>
        let pending: Data
        let started: Bool
        let reservePositions: Int
    }

    struct Plan: Sendable {
        let lane: Int
        let replicas: [Int]
        let entries: [Entry]
    }

    /// What came back for one entry.
    struct EntryResult: Sendable {
        var token: GeneratedToken?
        var text = ""
        var pending = Data()
        var started = false
    }

    enum Outcome: Sendable {
        case success([EntryResult])
        case stageFailed(stage: Int, error: RPCError)
    }

    public let config: ClusterConfig
    public let contextLength: Int
    /// Positions of KV cache the smallest stage holds (nil: not limited).
    public let kvPositionCapacity: Int?
    /// Positions reserved by the running sequences.
    var reservedPositions = 0
    let stages: [[RPCClient]]
    let tokenizer: RPCClient
    let logger: Logger
    let laneCount: Int
    var laneReplicas: [[Int]]
    /// Which replica of every stage is up (see PipelineScheduler+Health).
    var replicaUp: [[Bool]]
    var healthTask: Task<Void, Never>?
    var laneFailingSince: [ContinuousClock.Instant?]
    var laneWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
    var sequences: [UInt64: Sequence] = [:]
    var waiting: [UInt64] = []
    /// Sequence ids start at random, so that they do not repeat those of a router before this one.
    var nextID = UInt64.random(in: 1...(1 << 48))
    var running = true
    var laneTasks: [Task<Void, Never>] = []

    /// Sequences that run at once; more wait for admission.
    var maxActive: Int { laneCount * config.scheduling.maxBatchSequences }

    /// - Parameter kvPositionCapacity: positions of KV cache the smallest stage replica holds
    ///   (`kv_capacity_bytes / kv_bytes_per_position` of its Info); nil admits by count alone.
    public init(config: ClusterConfig, stages: [[RPCClient]], tokenizer: RPCClient, contextLength: Int,
                kvPositionCapacity: Int? = nil, logger: Logger = Logger(label: "gemma.router")) {
        self.config = config
        self.stages = stages
        self.tokenizer = tokenizer
        self.contextLength = contextLength
        self.kvPositionCapacity = kvPositionCapacity
        self.logger = logger
        laneCount = max(1, stages.count)
        laneReplicas = (0..<max(1, stages.count)).map { lane in stages.map { lane % max(1, $0.count) } }
        laneFailingSince = Array(repeating: nil, count: max(1, stages.count))
        replicaUp = stages.map { Array(repeating: true, count: $0.count) }
    }

    /// Frees whatever an earlier router left on the stages, then starts the lanes and the
    /// replicas' health checks.
    public func start() async {
        guard laneTasks.isEmpty else { return }
        await releaseAllOnEveryReplica()
        startHealthChecks()
        for lane in 0..<laneCount {
            laneTasks.append(Task { await self.runLane(lane) })
        }
    }

    /// Stops the lanes; running completions end with an error.
    public func stop() {
        running = false
        healthTask?.cancel()
        for (_, waiter) in laneWaiters { waiter.resume() }
        laneWaiters.removeAll()
        for sequence in sequences.values {
            sequence.continuation.finish(throwing: ClusterError.pipelineDown("the router is shutting down"))
        }
        releaseEverywhere(Array(sequences.keys))
        sequences.removeAll()
        waiting.removeAll()
        reservedPositions = 0
    }

    /// Requests that are running and waiting.
    public var counts: (running: Int, waiting: Int) { (sequences.count - waiting.count, waiting.count) }

    /// KV cache positions reserved by running sequences, and the capacity (nil: not limited).
    public var kvReservation: (reserved: Int, capacity: Int?) { (reservedPositions, kvPositionCapacity) }

    /// Queues a completion. The stream yields text deltas and then `finished`; ending the
    /// stream early (the client went away) cancels the completion and frees its KV caches.
    public func submit(_ request: ClusterGenerationRequest) throws -> AsyncThrowingStream<GenerationEvent, Error> {
        guard running else { throw ClusterError.pipelineDown("the router is shutting down") }
        guard !request.prompt.isEmpty else { throw ClusterError.invalidRequest("the prompt is empty") }
        guard request.maxTokens >= 1 else { throw ClusterError.invalidRequest("max_tokens must be at least 1") }
        guard request.prompt.count < contextLength else {
            throw ClusterError.promptTooLong(tokens: request.prompt.count, limit: contextLength)
        }
        guard (0...Int(UInt32.max)).contains(request.topLogprobs) else {
            throw ClusterError.invalidRequest("top_logprobs must be between 0 and \(UInt32.max)")
        }
        // Saturating: maxTokens comes from the client (Int.max would trap a plain sum).
        let (wanted, overflow) = request.prompt.count.addingReportingOverflow(request.maxTokens)
        let reservation = overflow ? contextLength : min(wanted, contextLength)
        if let capacity = kvPositionCapacity, reservation > capacity {
            throw ClusterError.invalidRequest("the prompt and max_tokens need \(reservation) positions of KV cache, but the smallest stage holds \(capacity); lower max_tokens")
        }
        let id = nextID
        nextID += 1
        let (stream, continuation) = AsyncThrowingStream<GenerationEvent, Error>.makeStream()
        continuation.onTermination = { [weak self] termination in
            guard case .cancelled = termination, let self else { return }
            Task { await self.cancel(id) }
        }
        sequences[id] = Sequence(id: id, request: request, continuation: continuation, history: request.prompt,
                                 reservation: reservation)
        waiting.append(id)
        admit()
        if waiting.count > config.scheduling.maxWaitingRequests, waiting.last == id {
            waiting.removeLast()
            sequences[id] = nil
            continuation.onTermination = nil
            continuation.finish()
            throw ClusterError.overloaded(retryAfterSeconds: 1)
        }
        return stream
    }

    /// Moves waiting sequences, oldest first, into the least loaded lanes while there is room:
    /// fewer than `maxActive` running and their reservation fits the KV capacity.
    func admit() {
        while let id = waiting.first, sequences.count - waiting.count < maxActive,
              let reservation = sequences[id]?.reservation,
              reservedPositions + reservation <= kvPositionCapacity ?? .max {
            waiting.removeFirst()
            reservedPositions += reservation
            var load = Array(repeating: 0, count: laneCount)
            for s in sequences.values where s.lane >= 0 { load[s.lane] += 1 }
            let lane = load.indices.min { load[$0] < load[$1] } ?? 0
            sequences[id]?.lane = lane
            wake(lane)
        }
    }

    func wake(_ lane: Int) {
        laneWaiters.removeValue(forKey: lane)?.resume()
    }

    /// The client went away: forget the sequence and free it on every stage.
    func cancel(_ id: UInt64) {
        guard var sequence = sequences[id] else { return }
        if sequence.inFlight {
            sequence.cancelled = true
            sequences[id] = sequence
            return
        }
        remove(id)
    }

    func remove(_ id: UInt64) {
        guard let sequence = sequences.removeValue(forKey: id) else { return }
        if sequence.lane >= 0 { reservedPositions -= sequence.reservation }
        waiting.removeAll { $0 == id }
        if sequence.lane >= 0 || sequence.cached > 0 { releaseEverywhere([id]) }
        admit()
    }

    /// Tells every replica of every stage to free `ids` (best effort, in the background).
    nonisolated func releaseEverywhere(_ ids: [UInt64]) {
        guard !ids.isEmpty else { return }
        var request = Gemma_V1_ReleaseRequest()
        request.sequenceIds = ids
        for replicas in stages {
            for client in replicas {
                Task { _ = try? await client.call(ShardRPC.release, request, deadline: .after(.seconds(2))) }
            }
        }
    }

    /// Release(all) to every replica (a replica that does not answer has nothing to free: it
    /// restarts empty).
    func releaseAllOnEveryReplica() async {
        var request = Gemma_V1_ReleaseRequest()
        request.all = true
        let logger = self.logger
        await withTaskGroup(of: Void.self) { group in
            for (s, replicas) in stages.enumerated() {
                for client in replicas {
                    group.addTask {
                        guard let reply = try? await client.call(ShardRPC.release, request, deadline: .after(.seconds(5))),
                              reply.released > 0 else { return }
                        logger.notice("freed sequences an earlier router left", metadata: [
                            "stage": "\(s)", "replica": "\(client.urls[0])", "sequences": "\(reply.released)"])
                    }
                }
            }
        }
    }

    // MARK: lanes

    func runLane(_ lane: Int) async {
        while let plan = await takeBatch(lane) {
            let outcome = await execute(plan)
            let backoff = apply(plan, outcome)
            if let backoff { try? await Task.sleep(for: backoff) }
        }
    }

    /// The lane's next micro-batch; waits while the lane has nothing to run, or while a stage
    /// it needs has no replica up (up to `recovery_seconds`).
    func takeBatch(_ lane: Int) async -> Plan? {
        while running {
            if let stage = relocate(lane) {
                if hasWork(lane) {
                    giveUpIfWaitedTooLong(lane, stage: stage)
                    try? await Task.sleep(for: .milliseconds(50))
                    continue
                }
            } else if let plan = makePlan(lane) {
                return plan
            }
            await withCheckedContinuation { laneWaiters[lane] = $0 }
        }
        return nil
    }

    func makePlan(_ lane: Int) -> Plan? {
        var budget = config.scheduling.maxPrefillTokens
        var entries: [Entry] = []
        for id in sequences.keys.sorted() {
            guard entries.count < config.scheduling.maxBatchSequences else { break }
            guard var s = sequences[id], s.lane == lane, !s.inFlight, !s.cancelled else { continue }
            let remaining = s.history.count - s.cached
            guard remaining > 0 else { continue }
            let count = remaining == 1 ? 1 : min(remaining, budget)
            guard count > 0 else { continue }
            if remaining > 1 { budget -= count }
            entries.append(Entry(id: id, start: s.cached, tokens: Array(s.history[s.cached..<s.cached + count]),
                                 samplesNext: count == remaining, sampling: s.request.sampling,
                                 logprobs: s.request.logprobs, topLogprobs: s.request.topLogprobs,
                                 stopTokens: s.request.stopTokens, pending: s.pending, started: s.started,
                                 reservePositions: s.reservation))
            s.inFlight = true
            sequences[id] = s
        }
        return entries.isEmpty ? nil : Plan(lane: lane, replicas: laneReplicas[lane], entries: entries)
    }

    /// Runs a micro-batch through every stage, then detokenizes the new tokens in one call.
    nonisolated func execute(_ plan: Plan) async -> Outcome {
        let timeout = Duration.milliseconds(Int64(config.scheduling.stageTimeoutSeconds * 1000))
        var hidden: [Gemma_V1_Tensor] = []
        var results = Array(repeating: EntryResult(), count: plan.entries.count)
        for (k, replicas) in stages.enumerated() {
            var request = Gemma_V1_ForwardRequest()
            request.hiddenDtype = config.scheduling.hiddenDType == "f32" ? .f32 : .bf16
            request.segments = plan.entries.enumerated().map { i, entry in
                var segment = Gemma_V1_Segment()
                segment.sequenceID = entry.id
                segment.startPosition = UInt32(entry.start)
                segment.reservePositions = UInt32(entry.reservePositions)
                if k == 0 { segment.tokens = entry.tokens } else { segment.hidden = hidden[i] }
                if k == stages.count - 1 {
                    segment.sampling = entry.sampling
                    segment.wantLogprobs = entry.logprobs
                    segment.topLogprobs = UInt32(entry.topLogprobs)
                }
                return segment
            }
            let reply: Gemma_V1_ForwardReply
            do {
                reply = try await replicas[plan.replicas[k]].call(ShardRPC.forward, request, deadline: .after(timeout))
            } catch {
                return .stageFailed(stage: k, error: error)
            }
            if k < stages.count - 1 {
                guard case let .hidden(tensor)? = reply.result, let parts = Self.splitRows(tensor, counts: plan.entries.map(\.tokens.count)) else {
                    return .stageFailed(stage: k, error: RPCError(.internal, "stage \(k) returned no hidden states for \(plan.entries.count) segments"))
                }
                hidden = parts
            } else {
                guard case let .sampled(sampled)? = reply.result, sampled.tokens.count == plan.entries.count else {
                    return .stageFailed(stage: k, error: RPCError(.internal, "the last stage returned no token per segment"))
                }
                for (i, token) in sampled.tokens.enumerated() where plan.entries[i].samplesNext {
                    results[i].token = GeneratedToken(token: token.token, logprob: plan.entries[i].logprobs ? token.logprob : nil,
                                                      topLogprobs: token.topLogprobs.map { ($0.token, $0.logprob) })
                }
            }
        }
        // One Detokenize for every sequence with a new (non-stop) token.
        var detokenize = Gemma_V1_DetokenizeRequest()
        var indices: [Int] = []
        for (i, entry) in plan.entries.enumerated() {
            guard let token = results[i].token, !entry.stopTokens.contains(token.token) else { continue }
            var sequence = Gemma_V1_DetokenizeSequence()
            sequence.sequenceID = entry.id
            sequence.tokenIds = [token.token]
            sequence.pending = entry.pending
            sequence.started = entry.started
            detokenize.sequences.append(sequence)
            indices.append(i)
        }
        if !indices.isEmpty {
            do {
                let reply = try await tokenizer.call(TokenizerRPC.detokenize, detokenize, deadline: .after(timeout))
                guard reply.sequences.count == indices.count else {
                    return .stageFailed(stage: stages.count, error: RPCError(.internal, "the tokenizer answered \(reply.sequences.count) of \(indices.count) sequences"))
                }
                for (i, result) in zip(indices, reply.sequences) {
                    results[i].text = result.text
                    results[i].pending = result.pending
                    results[i].started = result.started
                }
            } catch {
                return .stageFailed(stage: stages.count, error: error)
            }
        }
        return .success(results)
    }

    /// Splits a [rows, hidden] tensor into consecutive row groups of `counts` rows.
    static func splitRows(_ tensor: Gemma_V1_Tensor, counts: [Int]) -> [Gemma_V1_Tensor]? {
        let rows = counts.reduce(0, +)
        guard tensor.shape.count == 2, Int(exactly: tensor.shape[0]) == rows, rows > 0, tensor.data.count % rows == 0 else { return nil }
        let rowBytes = tensor.data.count / rows
        var parts: [Gemma_V1_Tensor] = []
        var offset = 0
        for count in counts {
            var part = Gemma_V1_Tensor()
            part.dtype = tensor.dtype
            part.shape = [UInt64(count), tensor.shape[1]]
            part.data = tensor.data.subdata(in: tensor.data.startIndex + offset * rowBytes..<tensor.data.startIndex + (offset + count) * rowBytes)
            parts.append(part)
            offset += count
        }
        return parts
    }

    /// Applies a micro-batch's outcome; returns how long the lane should pause (after a failure).
    func apply(_ plan: Plan, _ outcome: Outcome) -> Duration? {
        switch outcome {
        case let .success(results):
            laneFailingSince[plan.lane] = nil
            for (entry, result) in zip(plan.entries, results) {
                guard var s = sequences[entry.id] else { continue }
                s.inFlight = false
                if s.cancelled {
                    sequences[entry.id] = s
                    remove(entry.id)
                    continue
                }
                s.cached = entry.start + entry.tokens.count
                sequences[entry.id] = s
                if let token = result.token { accept(token, result: result, for: entry.id) }
            }
            return nil
        case let .stageFailed(stage, error):
            let now = ContinuousClock.now
            let since = laneFailingSince[plan.lane] ?? now
            laneFailingSince[plan.lane] = since
            logger.warning("stage call failed", metadata: ["lane": "\(plan.lane)", "stage": "\(stage)", "error": "\(error)"])
            let lost = error.code != .resourceExhausted
            if stage < stages.count, error.code == .unavailable {
                // No connection: down for every lane until it answers Info again.
                markDown(stage: stage, replica: plan.replicas[stage], reason: error.message)
            } else if stage < stages.count, error.code != .failedPrecondition, error.code != .resourceExhausted {
                // Slow or failing but connected: move the lane to the next replica of the stage.
                laneReplicas[plan.lane][stage] = nextReplica(of: stage, after: laneReplicas[plan.lane][stage])
            }
            let giveUp = now - since > .milliseconds(Int64(config.scheduling.recoverySeconds * 1000))
            for id in sequences.keys where sequences[id]?.lane == plan.lane {
                guard var s = sequences[id] else { continue }
                if plan.entries.contains(where: { $0.id == id }) { s.inFlight = false }
                if lost { s.cached = 0 }  // re-prefill the history wherever the lane runs next
                sequences[id] = s
                if s.cancelled && !s.inFlight { remove(id); continue }
                if giveUp && plan.entries.contains(where: { $0.id == id }) {
                    s.continuation.finish(throwing: ClusterError.pipelineDown(
                        "stage \(stage < stages.count ? "\(stage) (layers \(config.stages[stage].layers))" : "tokenizer") failed for \(config.scheduling.recoverySeconds) s: \(error.message)"))
                    remove(id)
                }
            }
            return .milliseconds(200)
        }
    }

    /// Records a sampled token: stop, emit text (holding back what may start a stop string),
    /// and finish at max_tokens or the context's end.
    func accept(_ token: GeneratedToken, result: PipelineScheduler.EntryResult, for id: UInt64) {
        guard var s = sequences[id] else { return }
        if s.request.stopTokens.contains(token.token) {
            finish(&s, reason: .stop, flushText: s.heldBack)
            return
        }
        s.history.append(token.token)
        s.generated += 1
        s.pending = result.pending
        s.started = result.started
        var text = s.heldBack + result.text
        s.heldBack = ""
        if let (before, _) = Self.firstStop(in: text, stops: s.request.stopStrings) {
            finish(&s, reason: .stop, flushText: before, tokens: [token])
            return
        }
        let hold = Self.stopPrefixLength(of: text, stops: s.request.stopStrings)
        if hold > 0 {
            s.heldBack = String(text.suffix(hold))
            text = String(text.dropLast(hold))
        }
        if s.generated >= s.request.maxTokens || s.history.count >= contextLength {
            finish(&s, reason: .length, flushText: text + s.heldBack, tokens: [token])
            return
        }
        s.continuation.yield(.delta(text: text, tokens: [token]))
        sequences[id] = s
    }

    func finish(_ s: inout Sequence, reason: ClusterFinishReason, flushText: String, tokens: [GeneratedToken] = []) {
        if !flushText.isEmpty || !tokens.isEmpty { s.continuation.yield(.delta(text: flushText, tokens: tokens)) }
        s.continuation.yield(.finished(reason: reason, promptTokens: s.request.prompt.count, completionTokens: s.generated))
        s.continuation.finish()
        sequences[s.id] = s
        remove(s.id)
    }

    /// The text before the first stop string in `text`, if any.
    static func firstStop(in text: String, stops: [String]) -> (String, String)? {
        var best: Range<String.Index>?
        for stop in stops where !stop.isEmpty {
            if let range = text.range(of: stop), best == nil || range.lowerBound < best!.lowerBound { best = range }
        }
        guard let best else { return nil }
        return (String(text[..<best.lowerBound]), String(text[best]))
    }

    /// Length (in characters) of the longest suffix of `text` that begins some stop string.
    static func stopPrefixLength(of text: String, stops: [String]) -> Int {
        var longest = 0
        for stop in stops where !stop.isEmpty {
            for length in stride(from: min(stop.count - 1, text.count), to: longest, by: -1) where text.hasSuffix(stop.prefix(length)) {
                longest = length
                break
            }
        }
        return longest
    }
}
