import ArgumentParser
import Foundation
import GemmaConvert

/// `gemma-quantize eval`: how far a quantized model's next-token distributions are from the
/// original's.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Compare a converted model's next-token distributions with the original's.")

    @Option(help: "The original model (checkpoint directory or .gguf).")
    var reference: String

    @Option(help: "The converted model (.gguf or directory).")
    var model: String

    @Option(help: "UTF-8 text file; each non-empty paragraph is a prompt (default: built-in prompts).")
    var prompts: String?

    @Option(name: .customLong("max-tokens"), help: "Tokens of each prompt to evaluate.")
    var maxTokens = 128

    @Flag(help: "Print the report as JSON.")
    var json = false

    func run() throws {
        var texts = QualityReport.defaultPrompts
        if let prompts {
            guard let data = FileManager.default.contents(atPath: prompts), let text = String(data: data, encoding: .utf8) else {
                throw ValidationError("--prompts \(prompts): cannot read UTF-8 text")
            }
            texts = text.components(separatedBy: "\n\n").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
        }
        let report = try QualityReport.compare(reference: LoadedModel(path: reference), candidate: LoadedModel(path: model),
                                               prompts: texts, maxTokens: maxTokens)
        if json {
            let data = try JSONSerialization.data(withJSONObject: report.dictionary, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(report.summary)
        }
    }
}
