import ArgumentParser
import Foundation
import GemmaModel

/// `gemma perplexity`: llama.cpp's perplexity of a model on a text file.
struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity on a text file, as llama.cpp's llama-perplexity computes it.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "UTF-8 text file to evaluate.")
    var file: String

    @Option(help: "Tokens per chunk (each chunk starts with BOS; its second half is scored).")
    var ctx = 256

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ValidationError("--file \(file): cannot read")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ValidationError("--file \(file): not UTF-8 text")
        }
        let loaded = try modelOptions.load()
        let tokenizer = loaded.tokenizer
        let model = try loaded.transformer()
        let tokens = tokenizer.encode(text, addBOS: true)
        let evaluator = try PerplexityEvaluator(model: model, contextLength: ctx, bos: tokenizer.bos)
        let chunks = evaluator.chunkCount(tokenCount: tokens.count)
        let interactive = isatty(STDERR_FILENO) != 0 && !json
        if !json {
            print("\(file): \(tokens.count) tokens, \(chunks) chunks of \(ctx)")
        }
        let start = Date()
        let result = try evaluator.evaluate(tokens) { partial in
            guard interactive else { return }
            let elapsed = Date().timeIntervalSince(start)
            let left = elapsed / Double(partial.chunks) * Double(chunks - partial.chunks)
            FileHandle.standardError.write(Data(String(format: "\r[%d/%d] perplexity %.4f, %.0f s left   ",
                                                       partial.chunks, chunks, partial.perplexity, left).utf8))
        }
        if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
        if json {
            try printJSON(["perplexity": result.perplexity, "standard_error": result.standardError,
                           "mean_nll": result.meanNLL, "chunks": result.chunks, "ctx": ctx,
                           "scored_tokens": result.scoredTokens, "chunk_mean_nll": result.chunkMeanNLL])
        } else {
            print(String(format: "perplexity: %.4f +/- %.5f", result.perplexity, result.standardError))
        }
    }
}
