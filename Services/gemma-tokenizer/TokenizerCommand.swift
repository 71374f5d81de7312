import ArgumentParser
import Foundation
import GemmaCluster
import GemmaConvert
import GemmaDigest
import GemmaQuant
import GemmaTokenizer
import GemmaTokenizerService
import GemmaWire
import Logging

/// `gemma-tokenizer`: serves gemma.v1.Tokenizer for one tokenizer.model until SIGTERM/SIGINT.
@main
struct TokenizerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemma-tokenizer",
        abstract: "Serve the gemma.v1.Tokenizer RPC service (Encode, Detokenize, ApplyChatTemplate, Info) over nng.",
        discussion: """
            SIGTERM or SIGINT stops accepting requests, lets in-flight ones finish (within \
            --shutdown-grace-seconds) and exits 0. Logs go to standard error.

            With --config FILE [--replica R], the model and the listen address come from a \
            cluster config (its 'model' and tokenizer[R]); --model and --listen given as well \
            override them.
            """)

    @Option(help: "A cluster config (JSON) to take the model and the listen address from.")
    var config: String?

    @Option(help: "With --config: which of the config's tokenizer addresses this worker listens on.")
    var replica: Int?

    @Option(help: "tokenizer.model, a directory that contains one (a Hugging Face checkpoint directory), or a .gguf file (its tokenizer metadata).")
    var model: String?

    @Option(help: "Where to listen: tcp://HOST:PORT, ipc:///PATH or inproc://NAME. Repeat to listen on several.")
    var listen: [String] = []

    @Option(help: "Requests handled at once; more get RESOURCE_EXHAUSTED.")
    var maxConcurrentRequests = 64

    @Option(help: "Largest request or reply, in bytes (larger requests are dropped).")
    var maxMessageBytes = 64 << 20

    @Option(help: "How long shutdown waits for in-flight requests, in seconds.")
    var shutdownGraceSeconds = 10.0

    @Option(help: "trace, debug, info, notice, warning, error or critical (debug logs every request).")
    var logLevel = "info"

    func validate() throws {
        if config == nil {
            guard replica == nil else { throw ValidationError("--replica goes with --config") }
            guard model != nil else { throw ValidationError("give --model (or --config FILE)") }
            guard !listen.isEmpty else { throw ValidationError("give at least one --listen URL") }
        }
        guard (replica ?? 0) >= 0 else { throw ValidationError("--replica cannot be negative") }
        guard maxConcurrentRequests > 0 else { throw ValidationError("--max-concurrent-requests must be positive") }
        guard maxMessageBytes >= 1024 else { throw ValidationError("--max-message-bytes must be at least 1024") }
        guard shutdownGraceSeconds >= 0 else { throw ValidationError("--shutdown-grace-seconds cannot be negative") }
        if let problem = ServiceRuntime.logLevelProblem(logLevel) { throw ValidationError(problem) }
    }

    func run() async throws {
        let logger = ServiceRuntime.bootstrapLogging(levelName: logLevel, label: "gemma.tokenizer")

        let (model, listen, place) = try settings()
        let service = try Self.service(model: model)
        logger.info("loaded tokenizer", metadata: ["model": "\(model)", "config": "\(place ?? "none")",
                                                    "vocab_size": "\(service.tokenizer.vocabularySize)",
                                                    "fingerprint": "\(service.fingerprint)"])
        let server = RPCServer(
            urls: listen,
            configuration: RPCServer.Configuration(maxMessageBytes: maxMessageBytes,
                                                   maxConcurrentRequests: maxConcurrentRequests,
                                                   shutdownGracePeriod: .milliseconds(Int64(shutdownGraceSeconds * 1000))),
            logger: logger)
        service.register(on: server)
        try server.start()

        try await ServiceRuntime.runUntilSignalled([server], logger: logger)
    }

    /// The model, the listen URLs and (with a config) where in it the worker is: the flags,
    /// filled in from the cluster config when there is one (flags win).
    func settings() throws -> (model: String, listen: [String], place: String?) {
        guard let config else { return (model ?? "", listen, nil) }
        let assignment: WorkerAssignment
        let model: String
        do {
            assignment = try ClusterConfig.load(path: config).tokenizerAssignment(replica: replica ?? 0, path: config)
            model = try assignment.model(overriddenBy: self.model, path: config)
        } catch {
            throw ValidationError("\(error)")
        }
        return (model, listen.isEmpty ? [assignment.listen] : listen, "\(config) \(assignment.field)")
    }

    /// The service for a tokenizer.model (or a directory holding one), or for a GGUF file: its
    /// tokenizer.model beside it when there is one, else the model rebuilt from its metadata.
    static func service(model: String) throws -> TokenizerService {
        let beside = URL(fileURLWithPath: model).deletingLastPathComponent().appendingPathComponent("tokenizer.model").path
        guard model.hasSuffix(".gguf"), !FileManager.default.fileExists(atPath: beside) else {
            return try TokenizerService(contentsOf: model.hasSuffix(".gguf") ? beside : model)
        }
        let bytes = try GGUFTokenizerMetadata.sentencePieceModel(from: try GGUFFile(path: model))
        return TokenizerService(tokenizer: try GemmaTokenizer(serializedModel: bytes, source: "tokenizer metadata of \(model)"),
                                fingerprint: SHA256.hexDigest(of: bytes))
    }
}
