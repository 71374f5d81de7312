import ArgumentParser
import GemmaModel

/// `gemma logits`: the next-token logits after a list of token ids.
struct LogitsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logits", abstract: "Print the logits of the last position for given token ids.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Comma-separated token ids, e.g. 2,17,301.")
    var tokens: String

    @Flag(help: "Print {\"logits\": [...]} (the only output format).")
    var json = false

    func run() throws {
        let ids = try parseTokenList(tokens)
        guard !ids.isEmpty else { throw ValidationError("--tokens is empty") }
        let model = try modelOptions.load().transformer()
        let logits = try model.forward(tokens: ids, startPosition: 0, cache: model.makeCache())
        try printJSON(["logits": logits.storage.map(Double.init)])
    }
}
