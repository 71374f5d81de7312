import ArgumentParser
import Foundation
import GemmaModel
import GemmaTokenizer

/// `gemma generate`: stream a continuation of a prompt (text or token ids).
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text from a prompt, streamed to stdout as it is produced.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Prompt text (BOS is added).")
    var prompt: String?

    @Option(help: "Prompt as comma-separated token ids, used as given (e.g. 2,17,301).")
    var tokens: String?

    @Flag(help: "Wrap the prompt in Gemma's chat template as one user turn.")
    var chat = false

    @Option(name: .customLong("max-tokens"), help: "Most tokens to generate.")
    var maxTokens = 256

    @Option(help: "Sampling temperature; 0 is greedy. Default: greedy unless a sampling flag is given, then 1.")
    var temperature: Float?

    @Option(name: .customLong("top-k"), help: "Sample from the k most likely tokens (0: all).")
    var topK: Int?

    @Option(name: .customLong("top-p"), help: "Sample from the smallest set of tokens with this much probability.")
    var topP: Float?

    @Option(help: "Random seed; the same seed gives the same text.")
    var seed: UInt64 = 0

    @Flag(name: .customLong("ignore-eos"), help: "Do not stop at <eos> or <end_of_turn>.")
    var ignoreEOS = false

    @Flag(help: "Print {\"tokens\": [...]} instead of streaming text.")
    var json = false

    func validate() throws {
        guard (prompt == nil) != (tokens == nil) else {
            throw ValidationError("give exactly one of --prompt or --tokens")
        }
        if chat && tokens != nil { throw ValidationError("--chat applies to --prompt, not --tokens") }
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be >= 0") }
        try sampling.validate()
    }

    var sampling: SamplingParameters {
        let sampled = temperature != nil || topK != nil || topP != nil
        return SamplingParameters(temperature: temperature ?? (sampled ? 1 : 0),
                                  topK: topK ?? 0, topP: topP ?? 1, seed: seed)
    }

    func run() throws {
        let loaded = try modelOptions.load()
        let tokenizer = loaded.tokenizer
        let model = try loaded.transformer()
        let promptTokens: [Int32]
        if let tokens {
            promptTokens = try parseTokenList(tokens)
        } else if chat {
            promptTokens = try tokenizer.encodeChat([ChatMessage(role: .user, content: prompt!)], addGenerationPrompt: true)
        } else {
            promptTokens = tokenizer.encode(prompt!, addBOS: true)
        }
        let request = GenerationRequest(prompt: promptTokens, maxTokens: maxTokens, sampling: sampling,
                                        stopTokens: ignoreEOS ? [] : Set(tokenizer.stopTokens))
        let generator = Generator(model: model)
        if json {
            let result = try generator.generate(request)
            try printJSON(["tokens": result.tokens.map(Int.init)])
            return
        }
        var detokenizer = IncrementalDetokenizer(tokenizer: tokenizer)
        let out = FileHandle.standardOutput
        try generator.generate(request) { token in
            let text = detokenizer.feed(token)
            if !text.isEmpty { out.write(Data(text.utf8)) }
        }
        out.write(Data((detokenizer.finish() + "\n").utf8))
    }
}
