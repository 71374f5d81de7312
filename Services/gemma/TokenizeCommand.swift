import ArgumentParser
import GemmaTokenizer

/// `gemma tokenize`: token ids of a text.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize", abstract: "Print the token ids of a text.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Text to tokenize.")
    var text: String

    @Flag(help: "Start with the BOS token.")
    var bos = false

    @Flag(help: "Print {\"ids\": [...]} (the only output format).")
    var json = false

    func run() throws {
        let tokenizer = try modelOptions.load().tokenizer
        try printJSON(["ids": tokenizer.encode(text, addBOS: bos).map(Int.init)])
    }
}
