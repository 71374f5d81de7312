import Foundation
import GemmaModel
import GemmaQuant
import GemmaTokenizer

/// A model and its tokenizer opened from what a user passes as `--model`: a Hugging Face
/// checkpoint directory, or a `.gguf` file (with a `tokenizer.model` beside it, or else the
/// tokenizer rebuilt from the file's metadata).
public struct LoadedModel: @unchecked Sendable {
    public let path: String
    public let source: TensorSource
    public let tokenizer: GemmaTokenizer

    public init(path: String) throws {
        self.path = path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CheckpointError.unreadable(file: path, reason: "no such file or directory")
        }
        let url = URL(fileURLWithPath: path)
        if isDirectory.boolValue {
            source = try SafetensorsCheckpoint(directory: path)
            tokenizer = try GemmaTokenizer(contentsOf: url.appendingPathComponent("tokenizer.model").path)
        } else {
            let checkpoint = try GGUFCheckpoint(path: path)
            source = checkpoint
            let beside = url.deletingLastPathComponent().appendingPathComponent("tokenizer.model").path
            if FileManager.default.fileExists(atPath: beside) {
                tokenizer = try GemmaTokenizer(contentsOf: beside)
            } else {
                tokenizer = try GGUFTokenizerMetadata.tokenizer(from: checkpoint.file)
            }
        }
    }

    /// The transformer over `layers` (all by default), weights used as stored.
    public func transformer(layers: Range<Int>? = nil) throws -> GemmaTransformer {
        try GemmaTransformer(source: source, layers: layers)
    }
}
