import Foundation

/// One cluster's topology: where the tokenizer and each pipeline stage's replicas listen, and
/// how the router serves. `gemma-router`, `gemma cluster up` and the compose deployment all read
/// this one format (JSON).
public struct ClusterConfig: Codable, Sendable, Equatable {
    /// One pipeline stage: a contiguous layer range and the addresses of its replicas.
    public struct Stage: Codable, Sendable, Equatable {
        /// "A-B": layers A ..< B.
        public var layers: String
        /// nng URLs of the shard workers holding these layers (each a full replica).
        public var replicas: [String]

        public init(layers: String, replicas: [String]) {
            self.layers = layers
            self.replicas = replicas
        }

        /// The layer range, or nil when `layers` is not "A-B" with A < B.
        public var layerRange: Range<Int>? {
            let parts = layers.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard parts.count == 2, let a = parts[0], let b = parts[1], a >= 0, a < b else { return nil }
            return a..<b
        }
    }

    /// The quantizer service a launcher runs beside the cluster (`gemma-quantize serve`).
    public struct Quantizer: Codable, Sendable, Equatable {
        /// nng URL it listens on.
        public var listen: String
        /// The folder its jobs read checkpoints from and write GGUF files to.
        public var modelsDir: String

        public init(listen: String, modelsDir: String) {
            self.listen = listen
            self.modelsDir = modelsDir
        }

        enum CodingKeys: String, CodingKey {
            case listen, modelsDir = "models_dir"
        }
    }

    /// How the router batches and recovers.
    public struct Scheduling: Codable, Sendable, Equatable {
        /// Most sequences in one micro-batch.
        public var maxBatchSequences = 16
        /// Most prompt tokens prefilled in one micro-batch (longer prompts go in chunks, so a
        /// long prompt never stalls the running streams for long, nor outlasts a stage's deadline).
        public var maxPrefillTokens = 256
        /// Most requests waiting for admission before new ones get 429.
        public var maxWaitingRequests = 64
        /// How long a sequence waits for a failed stage (another replica, or the same one back)
        /// before its client gets an error.
        public var recoverySeconds = 30.0
        /// Deadline of one stage call (a whole micro-batch: make it generous on slow machines).
        /// A replica that is gone is noticed sooner: from its closed connection at once, or
        /// from a missed heartbeat.
        public var stageTimeoutSeconds = 120.0
        /// How often the router asks every stage replica for Info; a replica that does not
        /// answer within twice this is taken down until it answers again (0 turns it off).
        public var heartbeatSeconds = 1.0
        /// Element type of hidden states between stages: "bf16" (half the bytes) or "f32" (exact).
        public var hiddenDType = "bf16"

        public init() {}

        enum CodingKeys: String, CodingKey {
            case maxBatchSequences = "max_batch_sequences", maxPrefillTokens = "max_prefill_tokens"
            case maxWaitingRequests = "max_waiting_requests", recoverySeconds = "recovery_seconds"
            case stageTimeoutSeconds = "stage_timeout_seconds", hiddenDType = "hidden_dtype"
            case heartbeatSeconds = "heartbeat_seconds"
        }

        /// Every field is optional; absent ones keep their defaults.
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            maxBatchSequences = try c.decodeIfPresent(Int.self, forKey: .maxBatchSequences) ?? maxBatchSequences
            maxPrefillTokens = try c.decodeIfPresent(Int.self, forKey: .maxPrefillTokens) ?? maxPrefillTokens
            maxWaitingRequests = try c.decodeIfPresent(Int.self, forKey: .maxWaitingRequests) ?? maxWaitingRequests
            recoverySeconds = try c.decodeIfPresent(Double.self, forKey: .recoverySeconds) ?? recoverySeconds
            stageTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .stageTimeoutSeconds) ?? stageTimeoutSeconds
            hiddenDType = try c.decodeIfPresent(String.self, forKey: .hiddenDType) ?? hiddenDType
            heartbeatSeconds = try c.decodeIfPresent(Double.self, forKey: .heartbeatSeconds) ?? heartbeatSeconds
        }

        /// The first field out of its range, as "name: problem".
        func problem() -> String? {
            let counts: [(String, Int)] = [("max_batch_sequences", maxBatchSequences), ("max_prefill_tokens", maxPrefillTokens),
                                           ("max_waiting_requests", maxWaitingRequests)]
            for (name, value) in counts where !(1...1_000_000).contains(value) {
                return "scheduling.\(name) \(value) is not between 1 and 1000000"
            }
            // Seconds become milliseconds in Int64 and nng's Int32 durations: keep them finite and within a day.
            let seconds: [(String, Double, ClosedRange<Double>)] = [
                ("recovery_seconds", recoverySeconds, 0...86_400), ("stage_timeout_seconds", stageTimeoutSeconds, 0.001...86_400),
                ("heartbeat_seconds", heartbeatSeconds, 0...3_600)]
            for (name, value, range) in seconds where !range.contains(value) {
                return "scheduling.\(name) \(value) is not between \(range.lowerBound) and \(range.upperBound)"
            }
            return nil
        }

    }

    /// The model directory or GGUF file (used by launchers that start the workers).
    public var model: String?
    /// The model id served at /v1/models.
    public var modelName: String
    /// nng URLs of tokenizer replicas.
    public var tokenizer: [String]
    public var stages: [Stage]
    /// HTTP listen address of the router, "host:port".
    public var http: String
    /// When set, requests must carry `Authorization: Bearer <apiKey>`.
    public var apiKey: String?
    /// Tokens a sequence may hold (prompt plus completion); the model's when absent (and never
    /// more than the model's or than the smallest stage's KV cache holds).
    public var contextLength: Int?
    /// KV cache budget of each shard worker a launcher starts ("512M", "2G", or bytes);
    /// the shard's default (1G) when absent.
    public var kvCacheBytes: String?
    /// A quantizer service to run beside the cluster (launchers only; the router ignores it).
    public var quantizer: Quantizer?
    public var scheduling: Scheduling

    public init(model: String? = nil, modelName: String, tokenizer: [String], stages: [Stage],
                http: String, apiKey: String? = nil, scheduling: Scheduling = Scheduling()) {
        self.model = model
        self.modelName = modelName
        self.tokenizer = tokenizer
        self.stages = stages
        self.http = http
        self.apiKey = apiKey
        self.scheduling = scheduling
    }

    enum CodingKeys: String, CodingKey {
        case model, modelName = "model_name", tokenizer, stages, http, apiKey = "api_key", scheduling
        case contextLength = "context_length", kvCacheBytes = "kv_cache_bytes", quantizer
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        modelName = try c.decodeIfPresent(String.self, forKey: .modelName) ?? "gemma"
        tokenizer = try c.decode([String].self, forKey: .tokenizer)
        stages = try c.decode([Stage].self, forKey: .stages)
        http = try c.decodeIfPresent(String.self, forKey: .http) ?? "127.0.0.1:8080"
        apiKey = try c.decodeIfPresent(String.self, forKey: .apiKey)
        contextLength = try c.decodeIfPresent(Int.self, forKey: .contextLength)
        kvCacheBytes = try c.decodeIfPresent(String.self, forKey: .kvCacheBytes)
        quantizer = try c.decodeIfPresent(Quantizer.self, forKey: .quantizer)
        scheduling = try c.decodeIfPresent(Scheduling.self, forKey: .scheduling) ?? Scheduling()
    }

    /// Reads and checks a config file; errors name the file and the field.
    public static func load(path: String) throws -> ClusterConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ClusterConfigError(path: path, problem: "cannot read the file")
        }
        let config: ClusterConfig
        do {
            config = try JSONDecoder().decode(ClusterConfig.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw ClusterConfigError(path: path, problem: "missing field '\((context.codingPath.map(\.stringValue) + [key.stringValue]).joined(separator: "."))'")
        } catch let DecodingError.typeMismatch(_, context) {
            throw ClusterConfigError(path: path, problem: "field '\(context.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type")
        } catch {
            throw ClusterConfigError(path: path, problem: "not valid JSON: \(error.localizedDescription)")
        }
        try config.validate(path: path)
        return config
    }

    /// The static checks: stages cover layers 0 ..< N exactly once, in order, each with replicas.
    public func validate(path: String = "cluster config") throws {
        guard ["bf16", "f32"].contains(scheduling.hiddenDType) else {
            throw ClusterConfigError(path: path, problem: "scheduling.hidden_dtype '\(scheduling.hiddenDType)' is not bf16 or f32")
        }
        if let problem = scheduling.problem() { throw ClusterConfigError(path: path, problem: problem) }
        if let contextLength, !(2...(1 << 24)).contains(contextLength) {
            throw ClusterConfigError(path: path, problem: "context_length \(contextLength) is not between 2 and \(1 << 24)")
        }
        guard !tokenizer.isEmpty else { throw ClusterConfigError(path: path, problem: "'tokenizer' lists no address") }
        guard !stages.isEmpty else { throw ClusterConfigError(path: path, problem: "'stages' is empty") }
        var next = 0
        for (i, stage) in stages.enumerated() {
            guard let range = stage.layerRange else {
                throw ClusterConfigError(path: path, problem: "stages[\(i)].layers '\(stage.layers)' is not A-B with A < B")
            }
            guard range.lowerBound == next else {
                throw ClusterConfigError(path: path, problem: next < range.lowerBound
                    ? "layers \(next)-\(range.lowerBound) are in no stage (stages[\(i)] starts at \(range.lowerBound))"
                    : "stages[\(i)] (layers \(stage.layers)) overlaps the previous stage, which ends at \(next)")
            }
            guard !stage.replicas.isEmpty else {
                throw ClusterConfigError(path: path, problem: "stages[\(i)] (layers \(stage.layers)) has no replicas")
            }
            next = range.upperBound
        }
    }

    /// Tokens a sequence may hold when the stages do not say: `context_length`, or Gemma's 8192.
    public var effectiveContextLength: Int { contextLength ?? 8192 }

    /// The config as JSON, in the file format (`load` reads it back).
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    /// Layers the stages cover (0 ..< this).
    public var layerCount: Int { stages.last?.layerRange?.upperBound ?? 0 }
}

/// A cluster config that cannot work, naming the file and the problem.
public struct ClusterConfigError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let problem: String
    public var description: String { "\(path): \(problem)" }
}
