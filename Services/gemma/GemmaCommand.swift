import ArgumentParser

/// The `gemma` command line: run, inspect and tokenize with a Gemma checkpoint.
@main
struct GemmaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemma",
        abstract: "Run Gemma models on the CPU.",
        subcommands: [GenerateCommand.self, LogitsCommand.self, TokenizeCommand.self, PerplexityCommand.self, BenchCommand.self,
                      MemoryCommand.self, ClusterCommand.self])
}
