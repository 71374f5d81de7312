import ArgumentParser
import Foundation
import GemmaQuantizerService
import GemmaWire
import Logging

/// `gemma-quantize serve`: the gemma.v1.Quantizer service over a models directory.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve gemma.v1.Quantizer (SubmitJob, JobStatus, CancelJob, ListJobs) over nng for a models directory.",
        discussion: """
            Jobs read and write only inside --models-dir (relative paths; no '..', no absolute \
            paths, no symbolic links leading outside). At most --max-jobs run at once and \
            --max-queued-jobs wait; more are refused with RESOURCE_EXHAUSTED. Jobs are kept in \
            .gemma-quantize-jobs.json in the models directory; after a restart, jobs that had not \
            finished are reported failed. SIGTERM or SIGINT stops the running jobs (they leave \
            no output and are reported failed) and exits 0. Logs go to standard error.
            """)

    @Option(help: "Where to listen: tcp://HOST:PORT, ipc:///PATH or inproc://NAME. Repeat to listen on several.")
    var listen: [String]

    @Option(name: .customLong("models-dir"), help: "The folder jobs read checkpoints from and write GGUF files to.")
    var modelsDir: String

    @Option(name: .customLong("max-jobs"), help: "Jobs converting at once.")
    var maxJobs = 1

    @Option(name: .customLong("max-queued-jobs"), help: "Jobs waiting behind the running ones.")
    var maxQueuedJobs = 8

    @Option(help: "Threads each job encodes on (default: all cores divided by --max-jobs).")
    var threads: Int?

    @Option(help: "Finished jobs remembered (the oldest are forgotten first).")
    var maxFinishedJobs = 1000

    @Option(help: "Largest request or reply, in bytes (larger requests are dropped).")
    var maxMessageBytes = 64 << 20

    @Option(help: "How long shutdown waits for in-flight calls, in seconds.")
    var shutdownGraceSeconds = 10.0

    @Option(help: "trace, debug, info, notice, warning, error or critical (debug logs every request).")
    var logLevel = "info"

    func validate() throws {
        guard !listen.isEmpty else { throw ValidationError("give at least one --listen URL") }
        guard maxJobs >= 1 else { throw ValidationError("--max-jobs must be at least 1") }
        guard maxQueuedJobs >= 0 else { throw ValidationError("--max-queued-jobs cannot be negative") }
        guard (threads ?? 1) >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard maxFinishedJobs >= 1 else { throw ValidationError("--max-finished-jobs must be at least 1") }
        guard maxMessageBytes >= 1024 else { throw ValidationError("--max-message-bytes must be at least 1024") }
        guard shutdownGraceSeconds >= 0 else { throw ValidationError("--shutdown-grace-seconds cannot be negative") }
        if let problem = ServiceRuntime.logLevelProblem(logLevel) { throw ValidationError(problem) }
    }

    func run() async throws {
        let logger = ServiceRuntime.bootstrapLogging(levelName: logLevel, label: "gemma.quantizer")

        let models: ModelsDirectory
        do {
            models = try ModelsDirectory(path: modelsDir)
        } catch {
            throw ValidationError("--models-dir: \(error)")
        }
        let runner = try QuantizerJobRunner(
            models: models,
            configuration: .init(maxRunningJobs: maxJobs, maxQueuedJobs: maxQueuedJobs, threadsPerJob: threads,
                                 maxFinishedJobs: maxFinishedJobs),
            logger: logger)
        defer { runner.shutdown() }
        logger.info("models directory", metadata: ["path": "\(models.root)", "jobs_known": "\(runner.list().count)",
                                                   "max_jobs": "\(maxJobs)", "max_queued_jobs": "\(maxQueuedJobs)"])
        let server = RPCServer(
            urls: listen,
            configuration: RPCServer.Configuration(maxMessageBytes: maxMessageBytes,
                                                   shutdownGracePeriod: .milliseconds(Int64(shutdownGraceSeconds * 1000))),
            logger: logger)
        QuantizerService(runner: runner).register(on: server)
        try server.start()

        try await ServiceRuntime.runUntilSignalled([server], logger: logger)
        logger.info("stopping jobs")
    }
}
