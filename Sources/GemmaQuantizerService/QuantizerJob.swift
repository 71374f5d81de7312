import GemmaConvert

/// What a client asks the quantizer service to do: convert `inputPath` to `outputPath` as
/// `target`. Paths are relative to the models directory.
public struct JobRequest: Sendable, Equatable {
    /// Chosen by the client; a second submit with the same id and parameters is the same job.
    public var jobID: String
    /// Checkpoint directory or float GGUF file.
    public var inputPath: String
    /// GGUF file to write.
    public var outputPath: String
    /// Element format of the output's weight tensors.
    public var target: QuantizationTarget
    /// Whether an existing output file may be replaced.
    public var overwrite: Bool

    /// A request; see the properties.
    public init(jobID: String, inputPath: String, outputPath: String, target: QuantizationTarget, overwrite: Bool = false) {
        self.jobID = jobID
        self.inputPath = inputPath
        self.outputPath = outputPath
        self.target = target
        self.overwrite = overwrite
    }
}

/// A conversion job as the service knows it: its request, state and progress. This is what
/// the journal stores and what `JobStatus` reports.
public struct QuantizerJob: Sendable, Equatable {
    /// Where a job is in its life. Succeeded, failed and cancelled are final.
    public enum State: String, Sendable, Codable {
        case queued = "QUEUED", running = "RUNNING", succeeded = "SUCCEEDED", failed = "FAILED", cancelled = "CANCELLED"

        /// Whether the job will not change any more.
        public var isFinal: Bool { self == .succeeded || self == .failed || self == .cancelled }
    }

    /// The request that made the job.
    public var request: JobRequest
    /// Where it is.
    public var state: State = .queued
    /// The tensor being written (1-based; equal to `tensorCount` when done).
    public var tensorIndex = 0
    /// Tensors in the output.
    public var tensorCount = 0
    /// Tensor bytes written so far.
    public var bytesWritten = 0
    /// Tensor bytes of the whole output.
    public var totalBytes = 0
    /// Recent write rate, in bytes per second.
    public var bytesPerSecond = 0.0
    /// Estimated time to finish; 0 when unknown or finished.
    public var secondsLeft = 0.0
    /// Why the job failed; empty otherwise.
    public var error = ""

    /// A queued job for `request`.
    public init(request: JobRequest) {
        self.request = request
    }

    /// The job id.
    public var id: String { request.jobID }
}

extension QuantizerJob: Codable {
    private enum CodingKeys: String, CodingKey {
        case jobID = "job_id", inputPath = "input_path", outputPath = "output_path", type, overwrite, state
        case tensorIndex = "tensor_index", tensorCount = "tensor_count", bytesWritten = "bytes_written"
        case totalBytes = "total_bytes", error
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let typeName = try c.decode(String.self, forKey: .type)
        guard let target = QuantizationTarget(rawValue: typeName) else {
            throw DecodingError.dataCorruptedError(forKey: .type, in: c, debugDescription: "unknown type '\(typeName)'")
        }
        self.init(request: JobRequest(jobID: try c.decode(String.self, forKey: .jobID),
                                      inputPath: try c.decode(String.self, forKey: .inputPath),
                                      outputPath: try c.decode(String.self, forKey: .outputPath),
                                      target: target, overwrite: try c.decode(Bool.self, forKey: .overwrite)))
        state = try c.decode(State.self, forKey: .state)
        tensorIndex = try c.decode(Int.self, forKey: .tensorIndex)
        tensorCount = try c.decode(Int.self, forKey: .tensorCount)
        bytesWritten = try c.decode(Int.self, forKey: .bytesWritten)
        totalBytes = try c.decode(Int.self, forKey: .totalBytes)
        error = try c.decode(String.self, forKey: .error)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(request.jobID, forKey: .jobID)
        try c.encode(request.inputPath, forKey: .inputPath)
        try c.encode(request.outputPath, forKey: .outputPath)
        try c.encode(request.target.rawValue, forKey: .type)
        try c.encode(request.overwrite, forKey: .overwrite)
        try c.encode(state, forKey: .state)
        try c.encode(tensorIndex, forKey: .tensorIndex)
        try c.encode(tensorCount, forKey: .tensorCount)
        try c.encode(bytesWritten, forKey: .bytesWritten)
        try c.encode(totalBytes, forKey: .totalBytes)
        try c.encode(error, forKey: .error)
    }
}
