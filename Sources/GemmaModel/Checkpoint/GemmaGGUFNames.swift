/// llama.cpp's conventions for Gemma in GGUF (`convert_hf_to_gguf.py`, `src/llama-arch.cpp`):
/// tensor names and the metadata keys of the `gemma` architecture.
public enum GemmaGGUFNames {
    public static let architecture = "gemma"

    /// Metadata keys.
    public enum Key {
        public static let architecture = "general.architecture"
        public static let name = "general.name"
        public static let fileType = "general.file_type"
        public static let quantizationVersion = "general.quantization_version"
        public static let alignment = "general.alignment"
        public static let contextLength = "gemma.context_length"
        public static let embeddingLength = "gemma.embedding_length"
        public static let blockCount = "gemma.block_count"
        public static let feedForwardLength = "gemma.feed_forward_length"
        public static let headCount = "gemma.attention.head_count"
        public static let headCountKV = "gemma.attention.head_count_kv"
        public static let keyLength = "gemma.attention.key_length"
        public static let valueLength = "gemma.attention.value_length"
        public static let rmsEpsilon = "gemma.attention.layer_norm_rms_epsilon"
        public static let ropeFreqBase = "gemma.rope.freq_base"
        public static let tokenizerModel = "tokenizer.ggml.model"
        public static let tokenizerPre = "tokenizer.ggml.pre"
        public static let tokens = "tokenizer.ggml.tokens"
        public static let scores = "tokenizer.ggml.scores"
        public static let tokenTypes = "tokenizer.ggml.token_type"
        public static let bosID = "tokenizer.ggml.bos_token_id"
        public static let eosID = "tokenizer.ggml.eos_token_id"
        public static let unknownID = "tokenizer.ggml.unknown_token_id"
        public static let paddingID = "tokenizer.ggml.padding_token_id"
        public static let eotID = "tokenizer.ggml.eot_token_id"
        public static let addBOS = "tokenizer.ggml.add_bos_token"
        public static let addEOS = "tokenizer.ggml.add_eos_token"
        public static let addSpacePrefix = "tokenizer.ggml.add_space_prefix"
    }

    /// The GGUF name of a Hugging Face tensor name, or nil for a tensor Gemma does not use.
    public static func ggufName(forHF name: String) -> String? {
        switch name {
        case "model.embed_tokens.weight": return "token_embd.weight"
        case "model.norm.weight": return "output_norm.weight"
        default: break
        }
        let parts = name.split(separator: ".")
        guard parts.count == 5 || parts.count == 6, parts[0] == "model", parts[1] == "layers",
              let layer = Int(parts[2]) else { return nil }
        let rest = parts[3...].joined(separator: ".")
        let suffix: String
        switch rest {
        case "input_layernorm.weight": suffix = "attn_norm.weight"
        case "self_attn.q_proj.weight": suffix = "attn_q.weight"
        case "self_attn.k_proj.weight": suffix = "attn_k.weight"
        case "self_attn.v_proj.weight": suffix = "attn_v.weight"
        case "self_attn.o_proj.weight": suffix = "attn_output.weight"
        case "post_attention_layernorm.weight": suffix = "ffn_norm.weight"
        case "mlp.gate_proj.weight": suffix = "ffn_gate.weight"
        case "mlp.up_proj.weight": suffix = "ffn_up.weight"
        case "mlp.down_proj.weight": suffix = "ffn_down.weight"
        default: return nil
        }
        return "blk.\(layer).\(suffix)"
    }

    /// The Hugging Face names of every tensor of a model, in the order llama.cpp's converter
    /// writes them (embedding, then each block, then the final norm).
    public static func hfTensorNames(layerCount: Int) -> [String] {
        var names = ["model.embed_tokens.weight"]
        for i in 0..<layerCount {
            let p = "model.layers.\(i)."
            names += [p + "input_layernorm.weight", p + "mlp.down_proj.weight", p + "mlp.gate_proj.weight",
                      p + "mlp.up_proj.weight", p + "post_attention_layernorm.weight",
                      p + "self_attn.k_proj.weight", p + "self_attn.o_proj.weight",
                      p + "self_attn.q_proj.weight", p + "self_attn.v_proj.weight"]
        }
        names.append("model.norm.weight")
        return names
    }

    /// Whether a Hugging Face tensor is a norm weight (stored as 1 + w in GGUF).
    public static func isNorm(_ hfName: String) -> Bool { hfName.hasSuffix("norm.weight") }

    /// Shape in PyTorch order of each Hugging Face tensor for `config`.
    public static func shape(of hfName: String, config: GemmaConfig) -> [Int] {
        let h = config.hiddenSize
        if isNorm(hfName) { return [h] }
        if hfName == "model.embed_tokens.weight" { return [config.vocabularySize, h] }
        if hfName.hasSuffix("q_proj.weight") { return [config.queryWidth, h] }
        if hfName.hasSuffix("k_proj.weight") || hfName.hasSuffix("v_proj.weight") { return [config.kvWidth, h] }
        if hfName.hasSuffix("o_proj.weight") { return [h, config.queryWidth] }
        if hfName.hasSuffix("down_proj.weight") { return [h, config.intermediateSize] }
        return [config.intermediateSize, h]  // gate, up
    }
}
