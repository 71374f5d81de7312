import Foundation

/// What one worker process of a cluster config serves: the model it loads, the address it
/// listens on, and for a shard its layers and KV cache budget. `gemma-shard --config FILE
/// --stage I [--replica R]` and `gemma-tokenizer --config FILE [--replica R]` start from this,
/// so one config file drives `gemma cluster up`, Docker Compose and hand-started hosts alike.
public struct WorkerAssignment: Sendable, Equatable {
    /// The config's `model` (nil when the config names none; the worker then needs `--model`).
    public var model: String?
    /// The nng URL this worker listens on (the address the others dial).
    public var listen: String
    /// A shard's layer range "A-B" (`stages[I].layers`); nil for a tokenizer.
    public var layers: String?
    /// A shard's KV cache budget (`kv_cache_bytes`); nil when the config leaves it to the shard.
    public var kvCacheBytes: String?
    /// Where in the config the listen address comes from, e.g. "stages[1].replicas[0]".
    public var field: String

    public init(model: String?, listen: String, layers: String?, kvCacheBytes: String?, field: String) {
        self.model = model
        self.listen = listen
        self.layers = layers
        self.kvCacheBytes = kvCacheBytes
        self.field = field
    }

    /// The model the worker loads: `flag` (its `--model`) when given, else the config's.
    /// - Throws: `ClusterConfigError` naming the config file when neither names one.
    public func model(overriddenBy flag: String?, path: String) throws -> String {
        guard let model = flag ?? model, !model.isEmpty else {
            throw ClusterConfigError(path: path, problem: "'model' is missing: set it to the checkpoint directory or GGUF file, or pass --model")
        }
        return model
    }
}

extension ClusterConfig {
    /// The shard worker that serves replica `replica` of stage `stage`.
    /// - Parameter path: the config file's name, for errors.
    /// - Throws: `ClusterConfigError` naming the file and field when the stage or replica
    ///   does not exist.
    public func shardAssignment(stage: Int, replica: Int = 0, path: String) throws -> WorkerAssignment {
        guard stages.indices.contains(stage) else {
            throw ClusterConfigError(path: path, problem: "stages[\(stage)] does not exist (the config has \(Self.count(stages.count, "stage")))")
        }
        let replicas = stages[stage].replicas
        guard replicas.indices.contains(replica) else {
            throw ClusterConfigError(path: path, problem: "stages[\(stage)].replicas[\(replica)] does not exist (stage \(stage) has \(Self.count(replicas.count, "replica")))")
        }
        return WorkerAssignment(model: model, listen: replicas[replica], layers: stages[stage].layers,
                                kvCacheBytes: kvCacheBytes, field: "stages[\(stage)].replicas[\(replica)]")
    }

    /// The tokenizer worker that serves `tokenizer[replica]`; it loads the config's `model`
    /// (a checkpoint directory holds tokenizer.model, a GGUF file carries the vocabulary).
    /// - Throws: `ClusterConfigError` naming the file and field when the replica does not exist.
    public func tokenizerAssignment(replica: Int = 0, path: String) throws -> WorkerAssignment {
        guard tokenizer.indices.contains(replica) else {
            throw ClusterConfigError(path: path, problem: "tokenizer[\(replica)] does not exist (the config lists \(Self.count(tokenizer.count, "tokenizer address", plural: "tokenizer addresses")))")
        }
        return WorkerAssignment(model: model, listen: tokenizer[replica], layers: nil, kvCacheBytes: nil,
                                field: "tokenizer[\(replica)]")
    }

    /// "1 stage", "2 stages".
    private static func count(_ n: Int, _ singular: String, plural: String? = nil) -> String {
        "\(n) \(n == 1 ? singular : plural ?? singular + "s")"
    }
}
