import ArgumentParser
import Foundation
import GemmaCluster
import GemmaShard
import GemmaShardService
import GemmaWire
import Logging

/// `gemma-shard`: serves gemma.v1.Shard for a range of a model's layers until SIGTERM/SIGINT.
@main
struct ShardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemma-shard",
        abstract: "Serve a pipeline stage (a range of a Gemma model's layers) as the gemma.v1.Shard RPC service over nng.",
        discussion: """
            The stage holding layer 0 embeds token ids; the one holding the last layer applies the \
            final norm and the LM head and samples. Each keeps the KV cache of its layers per \
            sequence within --kv-cache-bytes. SIGTERM or SIGINT stops accepting requests, lets the \
            running and queued batches finish (within --shutdown-grace-seconds) and exits 0. Logs go \
            to standard error.

            With --config FILE --stage I [--replica R], the model, the layers, the listen address \
            and the KV budget come from a cluster config (its 'model', stages[I].layers, \
            stages[I].replicas[R] and 'kv_cache_bytes'); --model, --layers, --listen and \
            --kv-cache-bytes given as well override them.
            """)

    @Option(help: "A cluster config (JSON) to take the model, layers, listen address and KV budget from (with --stage).")
    var config: String?

    @Option(help: "With --config: the stage this worker serves (0 holds layer 0).")
    var stage: Int?

    @Option(help: "With --config: which of the stage's replicas this worker is (its listen address).")
    var replica: Int?

    @Option(help: "A Hugging Face checkpoint directory or a .gguf file.")
    var model: String?

    @Option(help: "Layers to hold, A-B with B excluded (e.g. 0-14); all layers by default.")
    var layers: String?

    @Option(help: "Where to listen: tcp://HOST:PORT, ipc:///PATH or inproc://NAME. Repeat to listen on several.")
    var listen: [String] = []

    @Option(help: "KV cache budget in bytes (suffixes K, M, G: powers of 1024; default 1G).")
    var kvCacheBytes: String?

    @Option(help: "Most positions in one Forward batch.")
    var maxBatchTokens = 8192

    @Option(help: "Largest request or reply, in bytes (larger requests are dropped).")
    var maxMessageBytes = 64 << 20

    @Option(help: "Requests accepted at once (they queue for the compute thread); more get RESOURCE_EXHAUSTED.")
    var maxConcurrentRequests = 64

    @Option(help: "How long shutdown waits for in-flight requests, in seconds.")
    var shutdownGraceSeconds = 30.0

    @Option(help: "trace, debug, info, notice, warning, error or critical (debug logs every batch).")
    var logLevel = "info"

    func validate() throws {
        if config == nil {
            guard stage == nil, replica == nil else { throw ValidationError("--stage and --replica go with --config") }
            guard model != nil else { throw ValidationError("give --model (or --config FILE --stage I)") }
            guard !listen.isEmpty else { throw ValidationError("give at least one --listen URL") }
        } else {
            guard let stage else { throw ValidationError("--config needs --stage I: which stage of the config this worker serves") }
            guard stage >= 0 else { throw ValidationError("--stage cannot be negative") }
            guard (replica ?? 0) >= 0 else { throw ValidationError("--replica cannot be negative") }
        }
        if let layers { _ = try Self.parseLayers(layers) }
        if let kvCacheBytes { _ = try Self.parseBytes(kvCacheBytes) }
        guard maxBatchTokens > 0 else { throw ValidationError("--max-batch-tokens must be positive") }
        guard maxConcurrentRequests > 0 else { throw ValidationError("--max-concurrent-requests must be positive") }
        guard maxMessageBytes >= 1024 else { throw ValidationError("--max-message-bytes must be at least 1024") }
        guard shutdownGraceSeconds >= 0 else { throw ValidationError("--shutdown-grace-seconds cannot be negative") }
        if let problem = ServiceRuntime.logLevelProblem(logLevel) { throw ValidationError(problem) }
    }

    /// "A-B" (B excluded) as a range.
    static func parseLayers(_ text: String, source: String = "--layers") throws -> Range<Int> {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let first = Int(parts[0]), let end = Int(parts[1]), first >= 0, end > first else {
            throw ValidationError("\(source) must be A-B with 0 <= A < B (B excluded), e.g. 0-14; got '\(text)'")
        }
        return first ..< end
    }

    /// "1073741824", "512M", "2G" as bytes.
    static func parseBytes(_ text: String, source: String = "--kv-cache-bytes") throws -> Int {
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var digits = text.uppercased()
        if digits.hasSuffix("IB") { digits.removeLast(2) } else if digits.hasSuffix("B") { digits.removeLast() }
        var scale = 1
        if let last = digits.last, let unit = units[last] {
            scale = unit
            digits.removeLast()
        }
        guard let value = Int(digits), value >= 0, value <= Int.max / scale else {
            throw ValidationError("\(source) must be a byte count such as 1073741824, 512M or 2G; got '\(text)'")
        }
        return value * scale
    }

    /// What this worker serves, from the flags and (with --config) the cluster config; each
    /// value remembers where it came from, for errors.
    struct Settings {
        var model: String
        var layers: (text: String, source: String)?
        var listen: [String]
        var kvCacheBytes: (text: String, source: String)?
        /// "cluster.json stages[1].replicas[0]" when started from a config.
        var place: String?
    }

    /// The flags, filled in from the cluster config when there is one (flags win).
    func settings() throws -> Settings {
        var settings = Settings(model: model ?? "", layers: layers.map { ($0, "--layers") }, listen: listen,
                                kvCacheBytes: kvCacheBytes.map { ($0, "--kv-cache-bytes") })
        guard let config, let stage else { return settings }
        let assignment: WorkerAssignment
        do {
            assignment = try ClusterConfig.load(path: config).shardAssignment(stage: stage, replica: replica ?? 0, path: config)
            settings.model = try assignment.model(overriddenBy: model, path: config)
        } catch {
            throw ValidationError("\(error)")
        }
        if layers == nil, let configured = assignment.layers { settings.layers = (configured, "\(config): stages[\(stage)].layers") }
        if listen.isEmpty { settings.listen = [assignment.listen] }
        settings.place = "\(config) \(assignment.field)"
        if kvCacheBytes == nil, let configured = assignment.kvCacheBytes {
            settings.kvCacheBytes = (configured, "\(config): kv_cache_bytes")
        }
        return settings
    }

    func run() async throws {
        let logger = ServiceRuntime.bootstrapLogging(levelName: logLevel, label: "gemma.shard")

        let settings = try settings()
        let range = try settings.layers.map { try Self.parseLayers($0.text, source: $0.source) }
        let kvCacheBytes = try settings.kvCacheBytes.map { try Self.parseBytes($0.text, source: $0.source) } ?? 1 << 30
        let started = ContinuousClock.now
        let source = try ShardEngine.openCheckpoint(settings.model)
        if let range, let layers = settings.layers, range.upperBound > source.config.layerCount {
            throw ValidationError("\(layers.source) \(layers.text) is outside the model's \(source.config.layerCount) layers (0-\(source.config.layerCount))")
        }
        let engine = try ShardEngine(
            source: source, layers: range,
            configuration: ShardEngine.Configuration(kvCacheBytes: kvCacheBytes, maxBatchTokens: maxBatchTokens))
        let status = engine.status
        logger.info("loaded model", metadata: [
            "model": "\(settings.model)",
            "config": "\(settings.place ?? "none")",
            "layers": "\(status.firstLayer)-\(status.endLayer)",
            "layer_count": "\(status.layerCount)",
            "first": "\(status.isFirst)", "last": "\(status.isLast)",
            "hidden_size": "\(status.hiddenSize)", "vocab_size": "\(status.vocabularySize)",
            "context_length": "\(status.contextLength)",
            "weight_bytes": "\(engine.transformer.weightBytes)",
            "kv_cache_bytes": "\(status.kvCapacityBytes)",
            "fingerprint": "\(status.modelFingerprint)",
            "load_time": "\(ContinuousClock.now - started)",
        ])

        let service = ShardService(engine: engine, logger: logger)
        defer { service.shutdown() }
        let server = RPCServer(
            urls: settings.listen,
            configuration: RPCServer.Configuration(maxMessageBytes: maxMessageBytes,
                                                   maxConcurrentRequests: maxConcurrentRequests,
                                                   shutdownGracePeriod: .milliseconds(Int64(shutdownGraceSeconds * 1000))),
            logger: logger)
        service.register(on: server)
        try server.start()

        try await ServiceRuntime.runUntilSignalled([server], logger: logger)
    }
}
