import ArgumentParser
import Foundation
import GemmaModel

/// `gemma bench`: prompt and decode throughput, bytes per token and the share of the memory
/// bandwidth measured in the same run.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure prompt and decode throughput (run a release build).")

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: .customLong("prompt-tokens"), help: "Prompt length for the prefill figure.")
    var promptTokens = 64

    @Option(name: .customLong("gen-tokens"), help: "Decode steps per measurement.")
    var genTokens = 32

    @Option(help: "Comma-separated batch sizes for decode.")
    var batch = "1,4,8"

    @Option(help: "Threads (default: all cores).")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Repetitions after the warm-up; figures are medians.")
    var repetitions = 3

    @Option(help: "Positions in each sequence's KV cache when decode is timed (pseudo-random keys and values beyond 8).")
    var context = 8

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard context >= 1 else { throw ValidationError("--context must be at least 1") }
    }

    func run() throws {
        let batches = try batch.split(separator: ",").map { part -> Int in
            guard let n = Int(part), n > 0 else { throw ValidationError("--batch: '\(part)' is not a positive integer") }
            return n
        }
        EngineBenchmark.setThreads(threads)
        var benchmark = EngineBenchmark(model: try modelOptions.load().transformer())
        benchmark.promptTokens = promptTokens
        benchmark.generatedTokens = genTokens
        benchmark.batchSizes = batches
        benchmark.repetitions = repetitions
        benchmark.context = context
        let result = try benchmark.run(threads: threads) { stage in
            if !json { FileHandle.standardError.write(Data("measuring \(stage)...\n".utf8)) }
        }
        if json {
            try printJSON([
                "model": modelOptions.model, "threads": threads, "context": context,
                "prompt_tokens": promptTokens, "prompt_tokens_per_second": result.promptTokensPerSecond,
                "decode": result.decode.map { ["batch": $0.batch, "per_stream": $0.perStream, "aggregate": $0.aggregate,
                                                "attention_share": $0.attentionShare] },
                "bytes_per_token": result.bytesPerToken, "bandwidth_bytes_per_second": result.bandwidth,
                "bandwidth_share": result.bandwidthShare,
            ])
            return
        }
        print("model: \(modelOptions.model), threads: \(threads)")
        print(String(format: "memory read bandwidth: %.1f GB/s", result.bandwidth / 1e9))
        print(String(format: "weights read per decoded token: %.3f GB", Double(result.bytesPerToken) / 1e9))
        print(String(format: "prompt (%d tokens): %.1f tokens/s", promptTokens, result.promptTokensPerSecond))
        for figure in result.decode {
            print(String(format: "decode, batch %d, context %d: %.2f tokens/s per stream, %.2f aggregate, attention %.1f%% of a step",
                         figure.batch, context, figure.perStream, figure.aggregate, figure.attentionShare * 100))
        }
        print(String(format: "single-stream decode uses %.0f%% of the measured bandwidth", result.bandwidthShare * 100))
    }
}
