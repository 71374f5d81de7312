import Foundation

/// The feed-forward activation. Gemma v1 uses the tanh approximation of GELU; the 2024 configs
/// spell it `hidden_act: "gelu"`, which transformers (and so we) read as the tanh form.
public enum Activation: String, Sendable {
    case geluTanh = "gelu_pytorch_tanh"
    case geluExact = "gelu"
}

/// The shape and numerics of a Gemma v1 model, read from a Hugging Face `config.json`
/// (both the 2024 and the current spellings) or from GGUF metadata.
public struct GemmaConfig: Sendable, Equatable {
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var rmsNormEpsilon: Float
    public var ropeTheta: Float
    public var contextLength: Int
    public var activation: Activation
    /// The dtype the checkpoint declares (`torch_dtype` or `dtype`), if any.
    public var declaredDType: TensorDType?

    public init(vocabularySize: Int, hiddenSize: Int, intermediateSize: Int, layerCount: Int,
                headCount: Int, kvHeadCount: Int, headDim: Int, rmsNormEpsilon: Float = 1e-6,
                ropeTheta: Float = 10_000, contextLength: Int = 8192,
                activation: Activation = .geluTanh, declaredDType: TensorDType? = nil) {
        self.vocabularySize = vocabularySize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.rmsNormEpsilon = rmsNormEpsilon
        self.ropeTheta = ropeTheta
        self.contextLength = contextLength
        self.activation = activation
        self.declaredDType = declaredDType
    }

    /// Width of all query heads together (differs from `hiddenSize` in 7B: 16 x 256 = 4096).
    public var queryWidth: Int { headCount * headDim }
    /// Width of all key (or value) heads together.
    public var kvWidth: Int { kvHeadCount * headDim }
    /// Query heads that share one key/value head.
    public var headsPerKVHead: Int { headCount / kvHeadCount }

    /// Reads and checks `config.json`. Errors name the file and the field.
    public init(contentsOf path: String) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw CheckpointError.unreadable(file: path, reason: "cannot read config.json")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data),
              let json = object as? [String: Any] else {
            throw CheckpointError.badHeader(file: path, detail: "not a JSON object")
        }
        try self.init(json: json, path: path)
    }

    /// Builds a config from the decoded JSON of a Hugging Face `config.json`.
    public init(json: [String: Any], path: String) throws {
        func int(_ key: String) throws -> Int {
            guard let raw = json[key], !(raw is NSNull) else {
                throw CheckpointError.missingConfigField(file: path, field: key)
            }
            guard let value = raw as? Int, value > 0 else {
                throw CheckpointError.invalidConfigField(file: path, field: key, detail: "expected a positive integer, found \(raw)")
            }
            return value
        }
        func number(_ raw: Any?, _ key: String) throws -> Double? {
            guard let raw, !(raw is NSNull) else { return nil }
            guard let value = (raw as? Double) ?? (raw as? Int).map(Double.init), value > 0, value.isFinite else {
                throw CheckpointError.invalidConfigField(file: path, field: key, detail: "expected a positive number, found \(raw)")
            }
            return value
        }

        if let modelType = json["model_type"] as? String, modelType != "gemma" {
            throw CheckpointError.invalidConfigField(
                file: path, field: "model_type",
                detail: "'\(modelType)' is not a Gemma v1 model (expected 'gemma')")
        }
        vocabularySize = try int("vocab_size")
        hiddenSize = try int("hidden_size")
        intermediateSize = try int("intermediate_size")
        layerCount = try int("num_hidden_layers")
        headCount = try int("num_attention_heads")
        kvHeadCount = try int("num_key_value_heads")
        headDim = try int("head_dim")
        contextLength = json["max_position_embeddings"] == nil ? 8192 : try int("max_position_embeddings")
        rmsNormEpsilon = Float(try number(json["rms_norm_eps"], "rms_norm_eps") ?? 1e-6)

        // RoPE theta: `rope_theta` (2024) or `rope_parameters.rope_theta` (current).
        var theta = try number(json["rope_theta"], "rope_theta")
        if let parameters = json["rope_parameters"] as? [String: Any] {
            if let ropeType = parameters["rope_type"] as? String, ropeType != "default" {
                throw CheckpointError.invalidConfigField(file: path, field: "rope_parameters.rope_type",
                                                         detail: "'\(ropeType)' is not supported (only 'default')")
            }
            let nested = try number(parameters["rope_theta"], "rope_parameters.rope_theta")
            if let theta, let nested, theta != nested {
                throw CheckpointError.invalidConfigField(
                    file: path, field: "rope_parameters.rope_theta",
                    detail: "\(nested) disagrees with rope_theta \(theta)")
            }
            theta = theta ?? nested
        }
        ropeTheta = Float(theta ?? 10_000)

        // Activation: `hidden_activation` (current) wins; the 2024 `hidden_act: "gelu"` means tanh GELU.
        if let name = json["hidden_activation"] as? String {
            switch name {
            case "gelu_pytorch_tanh", "gelu_new", "gelu_fast": activation = .geluTanh
            case "gelu": activation = .geluExact
            default:
                throw CheckpointError.invalidConfigField(file: path, field: "hidden_activation",
                                                         detail: "'\(name)' is not a GELU activation")
            }
        } else if let name = json["hidden_act"] as? String {
            guard ["gelu", "gelu_pytorch_tanh", "gelu_new", "gelu_fast"].contains(name) else {
                throw CheckpointError.invalidConfigField(file: path, field: "hidden_act",
                                                         detail: "'\(name)' is not a GELU activation")
            }
            activation = .geluTanh
        } else {
            activation = .geluTanh
        }

        // Declared dtype: `dtype` (current) or `torch_dtype` (2024).
        declaredDType = nil
        for key in ["dtype", "torch_dtype"] {
            guard let name = json[key] as? String else { continue }
            guard let dtype = TensorDType(configName: name) else {
                throw CheckpointError.invalidConfigField(file: path, field: key,
                                                         detail: "'\(name)' is not float32, float16 or bfloat16")
            }
            if let declaredDType, declaredDType != dtype {
                throw CheckpointError.invalidConfigField(file: path, field: key,
                                                         detail: "'\(name)' disagrees with the other dtype field")
            }
            declaredDType = dtype
        }
        try validate(path: path)
    }

    /// Upper bounds `validate` enforces. They are far above any Gemma (7B: 28 layers, 16 heads of
    /// 256, hidden 3072, intermediate 24576, vocabulary 256000, context 8192) and low enough that
    /// every size derived from them fits in an `Int` with room to spare: the largest matrix is
    /// vocabulary x hidden = 2^39 elements (2^41 bytes in f32), the KV cache of one position at
    /// most 2 x 2^10 layers x 2^24 floats (2^37 bytes), of one whole sequence at most 2^59 bytes.
    public enum Limits {
        /// `num_hidden_layers`.
        public static let layers = 1 << 10
        /// `num_attention_heads` and `num_key_value_heads`.
        public static let heads = 1 << 10
        /// `head_dim`.
        public static let headDim = 1 << 14
        /// `hidden_size`.
        public static let hidden = 1 << 17
        /// `intermediate_size`.
        public static let intermediate = 1 << 20
        /// `vocab_size`.
        public static let vocabulary = 1 << 22
        /// `max_position_embeddings`.
        public static let context = 1 << 22
    }

    /// Checks every size against `Limits` and the relations between fields (a config can be
    /// well-typed and still impossible). Errors name `path` and the field, spelled as in
    /// config.json unless `fieldNames` maps the config.json name to another (GGUF keys).
    public func validate(path: String, fieldNames: [String: String] = [:]) throws {
        func field(_ name: String) -> String { fieldNames[name] ?? name }
        let sizes: [(String, Int, Int)] = [
            ("vocab_size", vocabularySize, Limits.vocabulary), ("hidden_size", hiddenSize, Limits.hidden),
            ("intermediate_size", intermediateSize, Limits.intermediate), ("num_hidden_layers", layerCount, Limits.layers),
            ("num_attention_heads", headCount, Limits.heads), ("num_key_value_heads", kvHeadCount, Limits.heads),
            ("head_dim", headDim, Limits.headDim), ("max_position_embeddings", contextLength, Limits.context),
        ]
        for (name, value, limit) in sizes {
            guard value > 0 else {
                throw CheckpointError.invalidConfigField(file: path, field: field(name), detail: "must be positive, found \(value)")
            }
            guard value <= limit else {
                throw CheckpointError.invalidConfigField(file: path, field: field(name),
                                                         detail: "\(value) is larger than the limit \(limit)")
            }
        }
        for (name, value) in [("rms_norm_eps", rmsNormEpsilon), ("rope_theta", ropeTheta)] where !(value.isFinite && value > 0) {
            throw CheckpointError.invalidConfigField(file: path, field: field(name), detail: "must be a positive finite number, found \(value)")
        }
        guard headCount % kvHeadCount == 0 else {
            throw CheckpointError.invalidConfigField(
                file: path, field: field("num_key_value_heads"),
                detail: "\(kvHeadCount) does not divide num_attention_heads \(headCount)")
        }
        guard headDim % 2 == 0 else {
            throw CheckpointError.invalidConfigField(file: path, field: field("head_dim"),
                                                     detail: "\(headDim) is odd; rotary embeddings need an even size")
        }
        // The products the model and the KV caches use; the limits keep them far from overflowing,
        // and they are checked anyway so that a change of limits cannot make them trap.
        let products: [(String, [Int])] = [
            ("num_attention_heads", [headCount, headDim]),              // query width
            ("num_key_value_heads", [2, layerCount, kvHeadCount, headDim, MemoryLayout<Float>.size, contextLength]),  // KV bytes of a sequence
            ("vocab_size", [vocabularySize, hiddenSize, MemoryLayout<Float>.size]),  // embedding bytes in f32
            ("intermediate_size", [intermediateSize, hiddenSize, MemoryLayout<Float>.size]),
        ]
        for (name, factors) in products {
            var product = 1
            for factor in factors {
                let (next, overflow) = product.multipliedReportingOverflow(by: factor)
                guard !overflow else {
                    throw CheckpointError.invalidConfigField(file: path, field: field(name),
                                                             detail: "the product \(factors.map(String.init).joined(separator: " x ")) overflows")
                }
                product = next
            }
        }
    }
}
