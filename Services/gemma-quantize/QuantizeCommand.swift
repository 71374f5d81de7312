import ArgumentParser
import Foundation
import GemmaConvert

/// `gemma-quantize`: convert Gemma checkpoints to GGUF (int8, int4 or float), and report what
/// quantization did to the model's predictions.
@main
struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemma-quantize",
        abstract: "Convert a Gemma checkpoint to GGUF (Q8_0, Q4_0, F16, BF16 or F32).",
        subcommands: [ConvertCommand.self, EvalCommand.self],
        defaultSubcommand: ConvertCommand.self)
}

/// The conversion itself: `gemma-quantize INPUT -o OUT.gguf --type q8_0`.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a Hugging Face checkpoint directory or a float GGUF file to GGUF.")

    @Argument(help: "Checkpoint directory (config.json, *.safetensors, tokenizer.model) or a .gguf file in f32/f16/bf16.")
    var input: String

    @Option(name: [.short, .customLong("output")], help: "Output .gguf file (written atomically).")
    var output: String

    @Option(help: "Output type: \(QuantizationTarget.allCases.map(\.rawValue).joined(separator: ", ")).")
    var type: String

    @Option(help: "Threads (default: all cores).")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    func validate() throws {
        guard QuantizationTarget(rawValue: type.lowercased()) != nil else {
            throw ValidationError("--type \(type): unknown type (expected one of \(QuantizationTarget.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        let directory = URL(fileURLWithPath: output).deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("--output \(output): directory \(directory) does not exist")
        }
    }

    func run() throws {
        let target = QuantizationTarget(rawValue: type.lowercased())!
        let converter = try GGUFConverter(input: input)
        let reporter = ProgressReporter()
        try converter.convert(to: output, target: target, threads: threads, progress: reporter.report)
        reporter.finish()
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        print("wrote \(output) (\(target.rawValue), \(String(format: "%.1f", Double(size) / 1e6)) MB)")
    }
}

/// Progress on a terminal (tensor i of N, MB/s, time left); nothing when stderr is not a terminal.
final class ProgressReporter {
    let interactive = isatty(STDERR_FILENO) != 0
    private var lastUpdate = Date.distantPast

    func report(_ progress: ConversionProgress) {
        guard interactive, Date().timeIntervalSince(lastUpdate) > 0.1 || progress.bytesWritten == progress.totalBytes else { return }
        lastUpdate = Date()
        let line = String(format: "\r[%d/%d] %@  %.0f MB/s, %.0f s left   ", progress.tensorIndex, progress.tensorCount,
                          progress.tensorName, progress.rate / 1e6, progress.secondsLeft)
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
