import ArgumentParser
import Foundation
import GemmaCluster
import GemmaRouter
import GemmaWire
import Hummingbird
import Logging

/// `gemma-router`: the OpenAI-compatible HTTP API over a pipeline of shard workers.
@main
struct RouterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemma-router",
        abstract: "Serve an OpenAI-compatible HTTP API (completions, chat completions, models, health) over a pipeline of gemma-shard workers.",
        discussion: """
            At start the router asks every stage replica for its Info and checks its layer range \
            and model fingerprint against the config (waiting up to --startup-timeout-seconds for \
            workers that are still starting). SIGTERM or SIGINT stops accepting connections, \
            ends the running completions and exits 0.
            """)

    @Option(help: "The cluster config (JSON): model_name, tokenizer, stages, http, api_key, context_length, scheduling.")
    var config: String

    @Option(help: "HTTP listen address HOST:PORT (default: the config's 'http').")
    var http: String?

    @Option(help: "Require 'Authorization: Bearer KEY' on /v1 requests (default: the config's 'api_key').")
    var apiKey: String?

    @Option(help: "How long to wait for the tokenizer and every stage replica to answer at start, in seconds.")
    var startupTimeoutSeconds = 60.0

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func validate() throws {
        if let problem = ServiceRuntime.logLevelProblem(logLevel) { throw ValidationError(problem) }
        if let http { _ = try Self.hostPort(http) }
    }

    static func hostPort(_ text: String) throws -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("'\(text)' is not HOST:PORT")
        }
        return (String(text[..<colon]), port)
    }

    func run() async throws {
        let logger = ServiceRuntime.bootstrapLogging(levelName: logLevel, label: "gemma.router")
        var config: ClusterConfig
        do {
            config = try ClusterConfig.load(path: self.config)
        } catch {
            throw ValidationError("\(error)")
        }
        if let http { config.http = http }
        if let apiKey { config.apiKey = apiKey }
        let (host, port) = try Self.hostPort(config.http)

        let tokenizer = try RPCClient(urls: config.tokenizer)
        let stages = try config.stages.map { stage in
            try stage.replicas.map { try RPCClient(url: $0, configuration: .init(retry: .never, waitsForConnection: false)) }
        }
        let summary: PipelineSummary
        do {
            summary = try await checkPipeline(config: config, stages: stages, tokenizer: tokenizer,
                                              timeout: .milliseconds(Int64(startupTimeoutSeconds * 1000)), logger: logger)
        } catch let error as PipelineCheckError {
            logger.critical("\(error.description)")
            throw ExitCode(1)
        }
        let contextLength = summary.servedContextLength(configured: config.contextLength)
        if contextLength < min(config.contextLength ?? summary.modelContextLength, summary.modelContextLength) {
            logger.warning("context length lowered to what the smallest stage's KV cache holds for one sequence; give the shards more --kv-cache-bytes",
                           metadata: ["context_length": "\(contextLength)"])
        }
        logger.info("pipeline ready", metadata: ["stages": "\(config.stages.count)", "model": "\(config.modelName)",
                                                 "fingerprint": "\(summary.fingerprint.prefix(16))",
                                                 "context_length": "\(contextLength)",
                                                 "kv_capacity_positions": "\(summary.kvPositionCapacity)"])

        let scheduler = PipelineScheduler(config: config, stages: stages, tokenizer: tokenizer, contextLength: contextLength,
                                          kvPositionCapacity: summary.kvPositionCapacity, logger: logger)
        await scheduler.start()
        let router = OpenAIRouter(scheduler: scheduler, cluster: config, tokenizer: tokenizer, stages: stages,
                                  contextLength: contextLength,
                                  configuration: .init(modelName: config.modelName, apiKey: config.apiKey), logger: logger)
        let app = router.application(host: host, port: port)
        logger.info("serving HTTP", metadata: ["address": "\(host):\(port)"])
        try await ServiceRuntime.runUntilSignalled([app], logger: logger)
        await scheduler.stop()
        logger.info("stopped")
    }
}
