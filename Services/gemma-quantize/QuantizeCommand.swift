import ArgumentParser
import Foundation
import GemmaConvert
import GemmaQuantizerService
import GemmaWire

/// `gemma-quantize`: convert Gemma checkpoints to GGUF (int8, int4 or float), here or through
/// a quantizer service, serve that service, and report what quantization did to the model's
/// predictions.
@main
struct QuantizeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemma-quantize",
        abstract: "Convert a Gemma checkpoint to GGUF (Q8_0, Q4_0, F16, BF16 or F32).",
        subcommands: [ConvertCommand.self, ServeCommand.self, EvalCommand.self],
        defaultSubcommand: ConvertCommand.self)
}

/// The conversion itself: `gemma-quantize INPUT -o OUT.gguf --type q8_0 [--remote URL]`.
struct ConvertCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a Hugging Face checkpoint directory or a float GGUF file to GGUF.",
        discussion: """
            With --remote, a running `gemma-quantize serve` does the conversion: INPUT and OUT are \
            paths relative to its models directory, and this command follows the job until it ends. \
            Stopping this command does not stop the job; running it again with the same --job-id \
            follows the job again.
            """)

    @Argument(help: "Checkpoint directory (config.json, *.safetensors, tokenizer.model) or a .gguf file in f32/f16/bf16.")
    var input: String

    @Option(name: [.short, .customLong("output")], help: "Output .gguf file (written atomically).")
    var output: String

    @Option(help: "Output type: \(QuantizationTarget.allCases.map(\.rawValue).joined(separator: ", ")).")
    var type: String

    @Option(help: "Threads (default: all cores; local conversions only).")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Convert through the quantizer service at this URL (tcp://HOST:PORT, ipc:///PATH).")
    var remote: String?

    @Option(name: .customLong("job-id"), help: "With --remote: the job's id (default: a new UUID); the same id follows an existing job.")
    var jobID: String?

    @Flag(help: "With --remote: replace an existing output (a local conversion always replaces it).")
    var overwrite = false

    func validate() throws {
        guard QuantizationTarget(rawValue: type.lowercased()) != nil else {
            throw ValidationError("--type \(type): unknown type (expected one of \(QuantizationTarget.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        if remote == nil {
            guard jobID == nil, !overwrite else { throw ValidationError("--job-id and --overwrite go with --remote") }
            let directory = URL(fileURLWithPath: output).deletingLastPathComponent().path
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("--output \(output): directory \(directory) does not exist")
            }
        }
    }

    func run() async throws {
        let target = QuantizationTarget(rawValue: type.lowercased())!
        if let remote {
            try await convertRemotely(at: remote, target: target)
            return
        }
        let converter = try GGUFConverter(input: input)
        let reporter = ProgressReporter()
        try converter.convert(to: output, target: target, threads: threads, progress: reporter.report)
        reporter.finish()
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        print("wrote \(output) (\(target.rawValue), \(String(format: "%.1f", Double(size) / 1e6)) MB)")
    }

    /// Submits the job to the service and follows it, showing the same progress as a local run.
    private func convertRemotely(at url: String, target: QuantizationTarget) async throws {
        var request = Gemma_V1_SubmitJobRequest()
        request.jobID = jobID ?? UUID().uuidString.lowercased()
        request.inputPath = input
        request.outputPath = output
        request.type = target.quantType
        request.overwrite = overwrite
        let client = try RPCClient(url: url)
        defer { client.close() }
        let reporter = ProgressReporter()
        var announced = false
        let job = try await RemoteConversion(client: client).run(request) { job in
            if !announced {
                announced = true
                FileHandle.standardError.write(Data("job \(job.jobID) on \(url) (rerun with --job-id \(job.jobID) to follow it again)\n".utf8))
            }
            if job.state == .running || job.state == .succeeded { reporter.report(job) }
        }
        reporter.finish()
        switch job.state {
        case .succeeded:
            print("wrote \(output) in the service's models directory (\(target.rawValue), \(String(format: "%.1f", Double(job.bytesWritten) / 1e6)) MB of tensors)")
        case .cancelled:
            throw RemoteJobError(message: "job \(job.jobID) was cancelled; nothing was written")
        default:
            throw RemoteJobError(message: "job \(job.jobID) failed: \(job.error)")
        }
    }
}

/// A remote job that did not succeed.
struct RemoteJobError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// Progress on a terminal (tensor i of N, MB/s, time left); nothing when stderr is not a terminal.
final class ProgressReporter {
    let interactive = isatty(STDERR_FILENO) != 0
    private var lastUpdate = Date.distantPast
    private var shown = false

    func report(_ progress: ConversionProgress) {
        show(index: progress.tensorIndex, count: progress.tensorCount, name: progress.tensorName,
             rate: progress.rate, secondsLeft: progress.secondsLeft, last: progress.bytesWritten == progress.totalBytes)
    }

    /// A remote job's progress (the service does not report tensor names).
    func report(_ job: Gemma_V1_Job) {
        guard job.tensorCount > 0 else { return }
        show(index: Int(job.tensorIndex), count: Int(job.tensorCount), name: nil,
             rate: job.bytesPerSecond, secondsLeft: job.secondsLeft, last: job.state == .succeeded)
    }

    private func show(index: Int, count: Int, name: String?, rate: Double, secondsLeft: Double, last: Bool) {
        guard interactive, Date().timeIntervalSince(lastUpdate) > 0.1 || last else { return }
        lastUpdate = Date()
        shown = true
        let label = name.map { " " + $0 } ?? ""
        let line = String(format: "\r[%d/%d]%@  %.0f MB/s, %.0f s left   ", index, count, label, rate / 1e6, secondsLeft)
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        if shown { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
