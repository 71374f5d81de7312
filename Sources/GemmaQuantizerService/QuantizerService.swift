import Foundation
import GemmaConvert
import GemmaWire

/// The `gemma.v1.Quantizer` service: a `QuantizerJobRunner` behind the wire.
///
/// SubmitJob opens the input on a Dispatch worker thread (reading a checkpoint's headers and
/// tokenizer can take a moment), so that Swift concurrency's few threads stay free for the
/// other calls; JobStatus and ListJobs answer at once; CancelJob returns once the job has
/// stopped.
public final class QuantizerService: Sendable {
    /// The jobs served.
    public let runner: QuantizerJobRunner

    /// Serves `runner`'s jobs.
    public init(runner: QuantizerJobRunner) {
        self.runner = runner
    }

    /// Registers SubmitJob, JobStatus, CancelJob and ListJobs on `server`.
    public func register(on server: RPCServer) {
        server.register(QuantizerRPC.submitJob) { request, _ in
            let runner = self.runner
            let job = try await Self.onWorkerThread { () throws(RPCError) in
                try runner.submit(Self.jobRequest(request))
            }
            var reply = Gemma_V1_SubmitJobReply()
            reply.job = job.proto
            return reply
        }
        server.register(QuantizerRPC.jobStatus) { request, _ in
            try self.runner.status(request.jobID).proto
        }
        server.register(QuantizerRPC.cancelJob) { request, _ in
            try await self.runner.cancelAndWait(request.jobID).proto
        }
        server.register(QuantizerRPC.listJobs) { _, _ in
            var reply = Gemma_V1_ListJobsReply()
            reply.jobs = self.runner.list().map(\.proto)
            return reply
        }
    }

    /// The library's request for a SubmitJob message.
    ///
    /// - Throws: `RPCError` INVALID_ARGUMENT for an unspecified or unknown type.
    public static func jobRequest(_ message: Gemma_V1_SubmitJobRequest) throws(RPCError) -> JobRequest {
        guard let target = QuantizationTarget(message.type) else {
            let known = [Gemma_V1_QuantType.q80, .q40, .f16, .bf16, .f32].map { "\(Gemma_V1_QuantType.name($0))" }
            throw .invalidArgument("type \(Gemma_V1_QuantType.name(message.type)) is not a conversion type; choose one of \(known.joined(separator: ", "))")
        }
        return JobRequest(jobID: message.jobID, inputPath: message.inputPath, outputPath: message.outputPath,
                          target: target, overwrite: message.overwrite)
    }

    private static func onWorkerThread<T: Sendable>(_ work: @escaping @Sendable () throws(RPCError) -> T) async throws(RPCError) -> T {
        let result: Result<T, RPCError> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: Result { () throws(RPCError) in try work() })
            }
        }
        return try result.get()
    }
}

extension QuantizationTarget {
    /// The target a wire type names; nil for QUANT_TYPE_UNSPECIFIED and unknown values.
    public init?(_ type: Gemma_V1_QuantType) {
        switch type {
        case .q80: self = .q8_0
        case .q40: self = .q4_0
        case .f16: self = .f16
        case .bf16: self = .bf16
        case .f32: self = .f32
        case .unspecified, .UNRECOGNIZED: return nil
        }
    }

    /// The wire's name for the target.
    public var quantType: Gemma_V1_QuantType {
        switch self {
        case .q8_0: return .q80
        case .q4_0: return .q40
        case .f16: return .f16
        case .bf16: return .bf16
        case .f32: return .f32
        }
    }
}

extension Gemma_V1_QuantType {
    /// "QUANT_TYPE_Q8_0", as the .proto spells it ("QUANT_TYPE_7" for unknown values).
    static func name(_ type: Gemma_V1_QuantType) -> String {
        switch type {
        case .unspecified: return "QUANT_TYPE_UNSPECIFIED"
        case .q80: return "QUANT_TYPE_Q8_0"
        case .q40: return "QUANT_TYPE_Q4_0"
        case .f16: return "QUANT_TYPE_F16"
        case .bf16: return "QUANT_TYPE_BF16"
        case .f32: return "QUANT_TYPE_F32"
        case .UNRECOGNIZED(let value): return "QUANT_TYPE_\(value)"
        }
    }
}

extension QuantizerJob {
    /// The job as the wire carries it.
    public var proto: Gemma_V1_Job {
        var job = Gemma_V1_Job()
        job.jobID = id
        job.state = switch state {
        case .queued: .queued
        case .running: .running
        case .succeeded: .succeeded
        case .failed: .failed
        case .cancelled: .cancelled
        }
        job.inputPath = request.inputPath
        job.outputPath = request.outputPath
        job.type = request.target.quantType
        job.tensorIndex = UInt32(clamping: tensorIndex)
        job.tensorCount = UInt32(clamping: tensorCount)
        job.bytesWritten = UInt64(max(0, bytesWritten))
        job.bytesPerSecond = bytesPerSecond
        job.secondsLeft = secondsLeft
        job.error = error
        return job
    }
}
