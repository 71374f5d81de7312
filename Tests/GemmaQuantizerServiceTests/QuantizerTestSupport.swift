import Foundation
import GemmaConvert
@testable import GemmaQuantizerService
@testable import GemmaWire
import Logging
import GemmaTestSupport
import XCTest

/// Paths and helpers shared by the quantizer service tests.
enum QuantizerFixtures {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // GemmaQuantizerServiceTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    /// A committed tiny checkpoint (sharded bf16 safetensors and a tokenizer).
    static let tinyModel = packageRoot.appendingPathComponent("Tests/Fixtures/models/tiny-mqa")
    /// The bundled model.
    static let bundledModel = packageRoot.appendingPathComponent("Models/tiny-shakespeare")

    private static let counter = Counter()

    /// A fresh ipc:// address in the temporary folder.
    static func ipcURL(_ name: String) -> String {
        "ipc://\(NSTemporaryDirectory())gemma-quantizer-\(getpid())-\(name)-\(counter.next()).ipc"
    }

    static func logger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = .warning
        return logger
    }

    static func request(_ id: String, _ input: String, _ output: String, _ type: Gemma_V1_QuantType = .q80,
                        overwrite: Bool = false) -> Gemma_V1_SubmitJobRequest {
        var request = Gemma_V1_SubmitJobRequest()
        request.jobID = id
        request.inputPath = input
        request.outputPath = output
        request.type = type
        request.overwrite = overwrite
        return request
    }

    /// Copies a checkpoint directory's files (not a link: links leading outside are refused).
    static func copyModel(_ source: URL, to destination: URL) throws {
        try FileManager.default.createDirectory(at: destination, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: source.path)
        where name == "config.json" || name == "tokenizer.model" || name.hasSuffix(".safetensors") || name.hasSuffix(".index.json") {
            try FileManager.default.copyItem(at: source.appendingPathComponent(name), to: destination.appendingPathComponent(name))
        }
    }
}

/// The runner's test hook: holds every job after each chunk until opened, and counts how
/// many times each job started converting.
final class ChunkGate: @unchecked Sendable {
    private let condition = NSCondition()
    private var isOpen: Bool
    private var lastBytes: [String: Int] = [:]
    private var starts: [String: Int] = [:]

    init(open: Bool) {
        isOpen = open
    }

    /// The hook for `QuantizerJobRunner.Configuration.afterEachChunk`.
    var hook: @Sendable (String, ConversionProgress) -> Void {
        { [self] id, progress in pass(id, progress) }
    }

    private func pass(_ id: String, _ progress: ConversionProgress) {
        condition.lock()
        defer { condition.unlock() }
        if progress.bytesWritten <= lastBytes[id, default: Int.max] { starts[id, default: 0] += 1 }
        lastBytes[id] = progress.bytesWritten
        while !isOpen { condition.wait() }
    }

    func open() {
        condition.lock()
        isOpen = true
        condition.broadcast()
        condition.unlock()
    }

    /// How many conversions of job `id` began.
    func runs(_ id: String) -> Int {
        condition.lock()
        defer { condition.unlock() }
        return starts[id, default: 0]
    }
}

/// A models directory in the temporary folder holding a copy of the tiny model, a runner,
/// the service on an RPC server, and a client.
final class QuantizerHarness: @unchecked Sendable {
    let directory: URL
    let runner: QuantizerJobRunner
    let server: RPCServer
    let client: RPCClient
    private let task: Task<Void, Error>

    /// The models folder: `directory/models`; `directory` also holds an "outside" folder.
    var models: URL { directory.appendingPathComponent("models") }

    init(directory: URL? = nil, url: String = QuantizerFixtures.ipcURL("service"),
         configuration: QuantizerJobRunner.Configuration = .init(), maxMessageBytes: Int = 64 << 20) throws {
        let directory = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("gemma-quantizer-\(UUID().uuidString)")
        self.directory = directory
        let models = directory.appendingPathComponent("models")
        if !FileManager.default.fileExists(atPath: models.path) {
            try QuantizerFixtures.copyModel(QuantizerFixtures.tinyModel, to: models.appendingPathComponent("tiny-mqa"))
        }
        runner = try QuantizerJobRunner(models: ModelsDirectory(path: models.path), configuration: configuration,
                                        logger: QuantizerFixtures.logger("test.quantizer"))
        let server = RPCServer(url: url, configuration: .init(maxMessageBytes: maxMessageBytes),
                               logger: QuantizerFixtures.logger("test.server"))
        QuantizerService(runner: runner).register(on: server)
        try server.start()
        self.server = server
        task = Task { try await server.run() }
        client = try RPCClient(url: server.boundURLs[0])
    }

    /// Stops the server and the runner (open any gate first).
    func stop() async {
        client.close()
        task.cancel()
        _ = await task.result
        runner.shutdown()
    }

    func submit(_ request: Gemma_V1_SubmitJobRequest) async throws -> Gemma_V1_Job {
        try await client.call(QuantizerRPC.submitJob, request, timeout: .seconds(30)).job
    }

    func status(_ id: String) async throws -> Gemma_V1_Job {
        var request = Gemma_V1_JobStatusRequest()
        request.jobID = id
        return try await client.call(QuantizerRPC.jobStatus, request, timeout: .seconds(10))
    }

    func cancel(_ id: String) async throws -> Gemma_V1_Job {
        var request = Gemma_V1_CancelJobRequest()
        request.jobID = id
        return try await client.call(QuantizerRPC.cancelJob, request, timeout: .seconds(30))
    }

    func list() async throws -> [Gemma_V1_Job] {
        try await client.call(QuantizerRPC.listJobs, Gemma_V1_ListJobsRequest(), timeout: .seconds(10)).jobs
    }

    /// Polls the job's status until `condition` holds (at most 60 s).
    @discardableResult
    func waitFor(_ id: String, _ what: String, _ condition: (Gemma_V1_Job) -> Bool) async throws -> Gemma_V1_Job {
        let giveUp = ContinuousClock.now + .seconds(60)
        while true {
            let job = try await status(id)
            if condition(job) { return job }
            guard ContinuousClock.now < giveUp else { throw TimedOut(what: "job \(id) \(what); it is \(job)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    func waitUntilFinal(_ id: String) async throws -> Gemma_V1_Job {
        try await waitFor(id, "to end") { RemoteConversion.isFinal($0.state) }
    }

    /// The names in a folder of the models directory, sorted.
    func files(in folder: String = "") throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: models.appendingPathComponent(folder).path).sorted()
    }
}
