import Foundation

/// The processes that run a cluster config on one machine (`gemma cluster up`): one tokenizer
/// per tokenizer address, one shard worker per replica of every stage, the quantizer service
/// when the config has one, and the router.
///
/// Every address of the config must be one this machine can listen on (ipc://, or tcp:// on a
/// local address); the model comes from the config's `model`.
public struct LocalClusterPlan: Sendable, Equatable {
    /// One process to start.
    public struct Service: Sendable, Equatable {
        /// How logs and messages name it, e.g. "shard 1.0" (stage 1, replica 0).
        public var name: String
        /// The executable's name (gemma-tokenizer, gemma-shard, gemma-quantize, gemma-router).
        public var executable: String
        public var arguments: [String]
        /// A worker (tokenizer or shard) that may be restarted when it dies; the router is not.
        public var isWorker: Bool
    }

    public var services: [Service]

    /// The processes for `config`, whose file is at `configPath` (the router reads it).
    /// - Throws: `ClusterConfigError` when the config names no model.
    public init(config: ClusterConfig, configPath: String, logLevel: String = "notice") throws {
        guard let model = config.model, !model.isEmpty else {
            throw ClusterConfigError(path: configPath, problem: "'model' is missing: a local cluster needs the checkpoint directory or GGUF file its workers load")
        }
        var services: [Service] = []
        for (i, url) in config.tokenizer.enumerated() {
            services.append(Service(name: config.tokenizer.count == 1 ? "tokenizer" : "tokenizer \(i)", executable: "gemma-tokenizer",
                                    arguments: ["--model", Self.tokenizerPath(model: model), "--listen", url, "--log-level", logLevel],
                                    isWorker: true))
        }
        for (s, stage) in config.stages.enumerated() {
            for (r, url) in stage.replicas.enumerated() {
                var arguments = ["--model", model, "--layers", stage.layers, "--listen", url, "--log-level", logLevel]
                if let bytes = config.kvCacheBytes { arguments += ["--kv-cache-bytes", bytes] }
                services.append(Service(name: "shard \(s).\(r)", executable: "gemma-shard", arguments: arguments, isWorker: true))
            }
        }
        if let quantizer = config.quantizer {
            services.append(Service(name: "quantizer", executable: "gemma-quantize",
                                    arguments: ["serve", "--listen", quantizer.listen, "--models-dir", quantizer.modelsDir,
                                                "--log-level", logLevel],
                                    isWorker: true))
        }
        services.append(Service(name: "router", executable: "gemma-router",
                                arguments: ["--config", configPath, "--log-level", logLevel], isWorker: false))
        self.services = services
    }

    /// The tokenizer of a model: its directory (which holds tokenizer.model), or the GGUF file
    /// (which carries the vocabulary).
    static func tokenizerPath(model: String) -> String { model }

    /// A config that serves `model` from `stages` stages of about equal layer counts, every
    /// service on an ipc:// socket in `runDirectory`, HTTP on `http`.
    public static func defaultConfig(model: String, modelName: String, layerCount: Int, stages: Int,
                                     http: String, runDirectory: String) -> ClusterConfig {
        let count = max(1, min(stages, layerCount))
        let bounds = (0...count).map { $0 * layerCount / count }
        let socket = { (name: String) in "ipc://" + URL(fileURLWithPath: runDirectory).appendingPathComponent(name + ".ipc").path }
        return ClusterConfig(
            model: model, modelName: modelName, tokenizer: [socket("tokenizer")],
            stages: (0..<count).map { Stage(layers: "\(bounds[$0])-\(bounds[$0 + 1])", replicas: [socket("stage\($0)")]) },
            http: http)
    }

    public typealias Stage = ClusterConfig.Stage
}
