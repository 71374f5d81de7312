import ArgumentParser
import Foundation
import GemmaCluster
import GemmaModel
import GemmaShard

/// `gemma cluster`: run a whole cluster on this machine.
struct ClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster", abstract: "Run a cluster (tokenizer, shard workers, router) as local processes.",
        subcommands: [ClusterUpCommand.self])
}

/// `gemma cluster up`: starts the tokenizer, the shard workers and the router of a cluster
/// config as local processes, says where the API is once /health answers, and stops them all
/// on Ctrl-C (SIGINT) or SIGTERM.
struct ClusterUpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Start a cluster's services as local processes; Ctrl-C stops them.",
        discussion: """
            With --config, runs that cluster config (the format gemma-router reads; its 'model' \
            names the checkpoint, its optional 'quantizer' a quantizer service to run too, and \
            every address must be local). Without it, serves --model \
            (the bundled Models/tiny-shakespeare by default) from --stages pipeline stages over \
            ipc:// sockets, and writes the config it made beside them. The gemma-tokenizer, \
            gemma-shard and gemma-router executables are taken from the directory of this one. \
            A service that dies is restarted, up to 5 times (the router re-prefills the sequences of \
            a restarted worker; a restarted router frees what the old one left on the stages).
            """)

    @Option(help: "A cluster config (JSON) to run.")
    var config: String?

    @Option(help: "Checkpoint directory or .gguf file (without --config; default: the bundled Models/tiny-shakespeare).")
    var model: String?

    @Option(help: "Pipeline stages (without --config).")
    var stages = 2

    @Option(help: "HTTP address HOST:PORT of the router (without --config; with it, overrides the config's).")
    var http: String?

    @Option(help: "Log level of the services: trace, debug, info, notice, warning, error or critical.")
    var logLevel = "notice"

    @Option(help: "How long to wait for /health to answer 200, in seconds.")
    var startupTimeoutSeconds = 300.0

    @Option(help: "Also run the quantizer service (gemma-quantize serve) on this models folder, over an ipc socket beside the others (a config's 'quantizer' does the same).")
    var quantizerModelsDir: String?

    @Flag(help: "Do not restart services that die.")
    var noRestart = false

    func validate() throws {
        guard stages >= 1 else { throw ValidationError("--stages must be at least 1") }
        if config != nil, model != nil { throw ValidationError("--model and --config exclude each other (the config names its model)") }
        if let http, LocalSupervisor.hostPort(http) == nil { throw ValidationError("--http '\(http)' is not HOST:PORT") }
    }

    func run() throws {
        let binDirectory = Bundle.main.executableURL!.resolvingSymlinksInPath().deletingLastPathComponent()
        let runDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("gemma-cluster-\(getpid())")
        try FileManager.default.createDirectory(at: runDirectory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: runDirectory) }

        var cluster: ClusterConfig
        if let config {
            do { cluster = try ClusterConfig.load(path: config) } catch { throw ValidationError("\(error)") }
        } else {
            let model = try self.model ?? Self.bundledModel(near: binDirectory)
            let layerCount = try ShardEngine.openCheckpoint(model).config.layerCount
            let name = URL(fileURLWithPath: model).deletingPathExtension().lastPathComponent
            cluster = LocalClusterPlan.defaultConfig(model: model, modelName: name, layerCount: layerCount, stages: stages,
                                                     http: http ?? "127.0.0.1:8080", runDirectory: runDirectory.path)
        }
        if let http { cluster.http = http }
        if let quantizerModelsDir {
            cluster.quantizer = .init(listen: "ipc://" + runDirectory.appendingPathComponent("quantizer.ipc").path,
                                      modelsDir: quantizerModelsDir)
        }
        // The router reads the config from a file: the one made here (or the given one, with --http applied).
        let configPath = runDirectory.appendingPathComponent("cluster.json").path
        try cluster.encoded().write(to: URL(fileURLWithPath: configPath))
        let plan: LocalClusterPlan
        do { plan = try LocalClusterPlan(config: cluster, configPath: configPath, logLevel: logLevel) } catch {
            throw ValidationError("\(error)")
        }
        let supervisor = try LocalSupervisor(plan: plan, binDirectory: binDirectory, restartServices: !noRestart)
        let (host, port) = LocalSupervisor.hostPort(cluster.http)!
        let status = supervisor.run(healthHost: host, port: port, startupTimeout: startupTimeoutSeconds) {
            let base = "http://\(host == "0.0.0.0" ? "127.0.0.1" : host):\(port)"
            print("""
                gemma cluster: model '\(cluster.modelName)' in \(cluster.stages.count) stage(s) (layers \(cluster.stages.map(\.layers).joined(separator: ", "))), \(plan.services.count) processes
                  OpenAI API: \(base)/v1   (health: \(base)/health, metrics: \(base)/metrics)
                  config: \(configPath)\(cluster.quantizer.map { "\n  quantizer: \($0.listen) (models: \($0.modelsDir)); gemma-quantize IN -o OUT --type q8_0 --remote \($0.listen)" } ?? "")
                  try: curl -N \(base)/v1/chat/completions -H 'Content-Type: application/json' -d '{"messages": [{"role": "user", "content": "What news from Verona?"}], "stream": true}'
                  Ctrl-C stops the cluster.
                """)
            fflush(stdout)
        }
        if status != 0 { throw ExitCode(status) }
    }

    /// Models/tiny-shakespeare in the current directory, or in the source tree the executable
    /// was built in (.build/<config>/gemma).
    static func bundledModel(near binDirectory: URL) throws -> String {
        let candidates = [URL(fileURLWithPath: FileManager.default.currentDirectoryPath),
                          binDirectory.deletingLastPathComponent().deletingLastPathComponent(),
                          binDirectory.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()]
            .map { $0.appendingPathComponent("Models/tiny-shakespeare").path }
        guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0 + "/config.json") }) else {
            throw ValidationError("the bundled model Models/tiny-shakespeare is not here or beside the build; pass --model or --config")
        }
        return found
    }
}
