import Foundation
import GemmaModel
import GemmaShard
import GemmaWire
import Logging

/// The `gemma.v1.Shard` service: one `ShardEngine` (a pipeline stage) behind the wire.
///
/// Forward and Release run on one dedicated compute thread, one at a time in arrival order
/// (`ComputeThread`); a call whose deadline passes while it waits is not started. Info is
/// answered at once from the engine's counters, so a router can poll it while batches run.
public final class ShardService: Sendable {
    /// The stage served.
    public let engine: ShardEngine
    /// The thread its batches run on.
    public let compute: ComputeThread
    private let logger: Logger

    /// Serves `engine`, starting its compute thread (stop it with `shutdown()`).
    public init(engine: ShardEngine, logger: Logger = Logger(label: "gemma.shard")) {
        self.engine = engine
        self.compute = ComputeThread(name: "shard-\(engine.layerRange.lowerBound)-\(engine.layerRange.upperBound)")
        self.logger = logger
    }

    /// Registers Forward, Release and Info on `server`.
    public func register(on server: RPCServer) {
        server.register(ShardRPC.forward) { request, context in
            try await self.forward(request, deadline: context.deadline, logger: context.logger)
        }
        server.register(ShardRPC.release) { request, context in
            try await self.release(request, deadline: context.deadline)
        }
        server.register(ShardRPC.info) { _, _ in self.info() }
    }

    /// Ends the compute thread after the running batch; calls still waiting get UNAVAILABLE.
    public func shutdown() {
        compute.shutdown()
    }

    /// Runs a batch on the compute thread.
    ///
    /// - Throws: `RPCError`: INVALID_ARGUMENT for a malformed batch, FAILED_PRECONDITION for
    ///   a segment that does not continue its sequence ("unknown sequence N", "sequence N has K
    ///   cached positions, segment starts at P"), RESOURCE_EXHAUSTED when the KV cache budget
    ///   would be passed, DEADLINE_EXCEEDED when the deadline passed before the batch's turn.
    public func forward(_ request: Gemma_V1_ForwardRequest, deadline: RPCDeadline = .none,
                        logger: Logger? = nil) async throws(RPCError) -> Gemma_V1_ForwardReply {
        let segments = try Self.segments(of: request)
        let dtype = try Self.hiddenDType(request.hiddenDtype)
        let engine = self.engine
        let start = ContinuousClock.now
        let output: ShardOutput = try await onComputeThread(deadline: deadline) { () throws(ShardError) in
            try engine.forward(segments, hiddenDType: dtype)
        }
        (logger ?? self.logger).debug("forward", metadata: [
            "segments": "\(segments.count)", "positions": "\(segments.reduce(0) { $0 + $1.input.count })",
            "elapsed": "\(ContinuousClock.now - start)"])
        var reply = Gemma_V1_ForwardReply()
        switch output {
        case .hidden(let hidden):
            reply.hidden = Self.tensor(hidden)
        case .sampled(let tokens):
            var sampled = Gemma_V1_SampledTokens()
            sampled.tokens = tokens.map { token in
                var entry = Gemma_V1_SampledToken()
                entry.sequenceID = token.sequenceID
                entry.token = token.token
                entry.logprob = token.logprob ?? 0
                entry.topLogprobs = token.topLogprobs.map { alternative in
                    var top = Gemma_V1_TopLogprob()
                    top.token = alternative.token
                    top.logprob = alternative.logprob
                    return top
                }
                return entry
            }
            reply.sampled = sampled
        }
        return reply
    }

    /// Frees sequences, on the compute thread (after the batches queued before).
    public func release(_ request: Gemma_V1_ReleaseRequest, deadline: RPCDeadline = .none) async throws(RPCError) -> Gemma_V1_ReleaseReply {
        let ids = request.sequenceIds
        let all = request.all
        let engine = self.engine
        let released = try await onComputeThread(deadline: deadline) { () throws(ShardError) in
            engine.release(all ? engine.pool.sequenceIDs : ids)
        }
        var reply = Gemma_V1_ReleaseReply()
        reply.released = UInt32(released)
        return reply
    }

    /// The stage's layers, model and KV cache occupancy (answered at once).
    public func info() -> Gemma_V1_ShardInfo {
        let status = engine.status
        var info = Gemma_V1_ShardInfo()
        info.firstLayer = UInt32(status.firstLayer)
        info.endLayer = UInt32(status.endLayer)
        info.layerCount = UInt32(status.layerCount)
        info.modelFingerprint = status.modelFingerprint
        info.kvCapacityBytes = UInt64(status.kvCapacityBytes)
        info.kvUsedBytes = UInt64(status.kvUsedBytes)
        info.isFirst = status.isFirst
        info.isLast = status.isLast
        info.hiddenSize = UInt32(status.hiddenSize)
        info.vocabSize = UInt32(status.vocabularySize)
        info.activeSequences = UInt32(status.activeSequences)
        info.kvBytesPerPosition = UInt64(status.kvBytesPerPosition)
        info.contextLength = UInt32(status.contextLength)
        return info
    }

    /// The RPC status of an engine error.
    public static func rpcError(_ error: ShardError) -> RPCError {
        switch error {
        case .invalidArgument: return RPCError(.invalidArgument, error.description)
        case .unknownSequence, .positionGap: return RPCError(.failedPrecondition, error.description)
        case .kvCacheExhausted: return RPCError(.resourceExhausted, error.description)
        case .internalError: return RPCError(.internal, error.description)
        }
    }

    private func onComputeThread<T: Sendable>(deadline: RPCDeadline,
                                              _ work: @escaping @Sendable () throws(ShardError) -> T) async throws(RPCError) -> T {
        do {
            return try await compute.run(deadline: deadline) {
                do {
                    return try work()
                } catch let error as ShardError {
                    throw Self.rpcError(error)
                }
            }
        } catch let error as RPCError {
            throw error
        } catch {
            throw RPCError(.internal, "\(error)")
        }
    }

    // MARK: Wire <-> engine

    /// The engine's segments of a request; INVALID_ARGUMENT for fields that cannot be taken.
    static func segments(of request: Gemma_V1_ForwardRequest) throws(RPCError) -> [ShardSegment] {
        var segments: [ShardSegment] = []
        segments.reserveCapacity(request.segments.count)
        for (index, segment) in request.segments.enumerated() {
            let name = "segments[\(index)] (sequence \(segment.sequenceID))"
            let input: ShardSegment.Input
            switch (segment.tokens.isEmpty, segment.hasHidden) {
            case (false, true):
                throw RPCError(.invalidArgument, "\(name) has both tokens and hidden states; the first stage takes tokens, the others hidden states")
            case (false, false):
                input = .tokens(segment.tokens)
            case (true, true):
                input = .hidden(try hiddenStates(segment.hidden, name: name))
            case (true, false):
                throw RPCError(.invalidArgument, "\(name) has neither tokens nor hidden states")
            }
            let sampling = segment.sampling
            // proto3: top_p 0 (unset) keeps all, like 1.
            let topP = sampling.topP == 0 ? 1 : sampling.topP
            guard sampling.topK <= UInt32(Int32.max) else {
                throw RPCError(.invalidArgument, "\(name): top_k \(sampling.topK) is too large")
            }
            segments.append(ShardSegment(
                sequenceID: segment.sequenceID,
                startPosition: Int(segment.startPosition),
                input: input,
                sampling: SamplingParameters(temperature: sampling.temperature, topK: Int(sampling.topK),
                                             topP: topP, seed: sampling.seed),
                wantLogprobs: segment.wantLogprobs,
                topLogprobs: Int(segment.topLogprobs),
                reservePositions: Int(segment.reservePositions)))
        }
        return segments
    }

    private static func hiddenStates(_ tensor: Gemma_V1_Tensor, name: String) throws(RPCError) -> HiddenStates {
        let dtype: HiddenDType
        switch tensor.dtype {
        case .f32: dtype = .f32
        case .bf16: dtype = .bf16
        case .f16: dtype = .f16
        default:
            throw RPCError(.invalidArgument, "\(name): hidden states have element type \(tensor.dtype); F32, BF16 or F16 are taken")
        }
        guard tensor.shape.count == 2 else {
            throw RPCError(.invalidArgument, "\(name): hidden states have shape \(tensor.shape); [tokens, hidden_size] expected")
        }
        // Bounded so that no product of them can overflow; the engine checks the real sizes.
        let limit = UInt64(1) << 31
        guard tensor.shape[0] < limit, tensor.shape[1] < limit else {
            throw RPCError(.invalidArgument, "\(name): hidden states of shape \(tensor.shape) are far too large")
        }
        return HiddenStates(dtype: dtype, rows: Int(tensor.shape[0]), columns: Int(tensor.shape[1]), data: tensor.data)
    }

    private static func hiddenDType(_ dtype: Gemma_V1_Tensor.DType) throws(RPCError) -> HiddenDType {
        switch dtype {
        case .unspecified, .bf16: return .bf16
        case .f32: return .f32
        case .f16: return .f16
        case .UNRECOGNIZED(let value):
            throw RPCError(.invalidArgument, "hidden_dtype \(value) is not a known element type")
        }
    }

    static func tensor(_ hidden: HiddenStates) -> Gemma_V1_Tensor {
        var tensor = Gemma_V1_Tensor()
        switch hidden.dtype {
        case .f32: tensor.dtype = .f32
        case .bf16: tensor.dtype = .bf16
        case .f16: tensor.dtype = .f16
        }
        tensor.shape = [UInt64(hidden.rows), UInt64(hidden.columns)]
        tensor.data = hidden.data
        return tensor
    }
}
