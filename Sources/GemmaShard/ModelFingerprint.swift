import Foundation
import GemmaDigest
import GemmaModel
import GemmaQuant

/// A SHA-256 that names a model's weights, the same for every stage of one model whatever
/// layers it holds, so that a router can check that its pipeline's stages agree.
///
/// It hashes a canonical description of the whole checkpoint: the configuration fields, then
/// every tensor of the file(s), sorted by name, as its name, element type, shape and byte count
/// followed by its first and last 4 KiB (all of it when smaller than 8 KiB). That is about
/// 8 KiB read per tensor (a few milliseconds from a memory map, even for 7B), and it tells
/// apart any two checkpoints that differ in shape, type, configuration or the ends of any tensor.
/// The same weights stored in another format (safetensors vs GGUF, other tensor names or types)
/// give another fingerprint.
public enum ModelFingerprint {
    /// Bytes hashed from each end of a tensor.
    public static let sampleBytes = 4096

    /// The fingerprint of `source`: 64 lowercase hex digits.
    ///
    /// - Throws: `ShardError.invalidArgument` for a source that is neither a safetensors
    ///   checkpoint nor a GGUF file (it has no tensor list to hash).
    public static func of(_ source: TensorSource) throws(ShardError) -> String {
        var hash = SHA256()
        hash.update(Array(description(of: source.config).utf8))
        if let checkpoint = source as? SafetensorsCheckpoint {
            for name in checkpoint.tensorNames {
                guard let (file, info) = try? checkpoint.info(name) else {
                    throw .invalidArgument("\(source.description): tensor \(name) is listed but cannot be found")
                }
                add(&hash, name: name, type: info.dtype.rawValue, shape: info.shape, bytes: file.rawBytes(of: info))
            }
        } else if let checkpoint = source as? GGUFCheckpoint {
            for info in checkpoint.file.tensors.sorted(by: { $0.name < $1.name }) {
                guard let bytes = try? checkpoint.file.unsafeBytes(of: info) else {
                    throw .invalidArgument("\(source.description): the data of tensor \(info.name) is out of the file")
                }
                add(&hash, name: info.name, type: info.type.name, shape: info.dimensions, bytes: bytes)
            }
        } else {
            throw .invalidArgument("cannot fingerprint \(source.description): not a safetensors checkpoint or a GGUF file")
        }
        return hash.hexDigest()
    }

    /// The configuration fields, one `key=value` a line (floats by their bit patterns).
    static func description(of config: GemmaConfig) -> String {
        let fields: [(String, String)] = [
            ("format", "gemma-model-fingerprint-v1"),
            ("vocab_size", "\(config.vocabularySize)"),
            ("hidden_size", "\(config.hiddenSize)"),
            ("intermediate_size", "\(config.intermediateSize)"),
            ("num_hidden_layers", "\(config.layerCount)"),
            ("num_attention_heads", "\(config.headCount)"),
            ("num_key_value_heads", "\(config.kvHeadCount)"),
            ("head_dim", "\(config.headDim)"),
            ("rms_norm_eps", "0x" + String(config.rmsNormEpsilon.bitPattern, radix: 16)),
            ("rope_theta", "0x" + String(config.ropeTheta.bitPattern, radix: 16)),
            ("max_position_embeddings", "\(config.contextLength)"),
            ("hidden_activation", config.activation.rawValue),
        ]
        return fields.map { "\($0.0)=\($0.1)\n" }.joined()
    }

    private static func add(_ hash: inout SHA256, name: String, type: String, shape: [Int],
                            bytes: UnsafeRawBufferPointer) {
        let header = "tensor \(name) \(type) [\(shape.map(String.init).joined(separator: ","))] \(bytes.count)\n"
        hash.update(Array(header.utf8))
        let head = min(bytes.count, sampleBytes)
        hash.update(UnsafeRawBufferPointer(rebasing: bytes[0 ..< head]))
        let tailStart = max(head, bytes.count - sampleBytes)
        hash.update(UnsafeRawBufferPointer(rebasing: bytes[tailStart ..< bytes.count]))
    }
}
