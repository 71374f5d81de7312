import ArgumentParser
import Foundation
import GemmaConvert
import GemmaModel
import GemmaTokenizer

/// `--model PATH`: a checkpoint directory (config.json, safetensors, tokenizer.model) or a
/// GGUF file.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Checkpoint directory (config.json, *.safetensors, tokenizer.model) or a .gguf file.")
    var model: String

    func validate() throws {
        guard FileManager.default.fileExists(atPath: model) else {
            throw ValidationError("--model \(model): no such file or directory")
        }
    }

    func load() throws -> LoadedModel {
        try LoadedModel(path: model)
    }
}

/// Parses "2,17,301" into token ids.
func parseTokenList(_ text: String) throws -> [Int32] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false)
    return try parts.map { part in
        guard let id = Int32(part.trimmingCharacters(in: .whitespaces)) else {
            throw ValidationError("--tokens: '\(part)' is not a token id (expected e.g. 2,17,301)")
        }
        return id
    }
}

/// Writes a JSON object to stdout on one line.
func printJSON(_ object: [String: Any]) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    FileHandle.standardOutput.write(data)
    FileHandle.standardOutput.write(Data("\n".utf8))
}
