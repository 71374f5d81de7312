import Foundation
import GemmaShard
import GemmaShardService
import GemmaTestSupport
import GemmaTokenizerService
import GemmaWire
import Logging

/// A tokenizer or shard service on its own RPCServer in this process (inproc://), for tests
/// that drive the real services over nng without starting processes.
public final class InProcessService: @unchecked Sendable {
    public let server: RPCServer
    /// The shard service (nil for the tokenizer), to read its state in assertions.
    public let shard: ShardService?
    private let task: Task<Void, Error>
    private let lock = NSLock()
    private var stopped = false
    private static let counter = Counter()

    public var url: String { server.boundURLs[0] }

    /// A logger that keeps tests quiet (critical only).
    public static func quiet(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = .critical
        return logger
    }

    /// The tokenizer of `model` (a directory with tokenizer.model) when `tokenizer`, else a
    /// shard of `model` holding `layers` (all when nil).
    public init(model: String, layers: Range<Int>? = nil, tokenizer: Bool = false, kvCacheBytes: Int = 64 << 20) throws {
        server = RPCServer(url: "inproc://in-process-service-\(Self.counter.next())", logger: Self.quiet("server"))
        if tokenizer {
            try TokenizerService(contentsOf: model + "/tokenizer.model").register(on: server)
            shard = nil
        } else {
            let engine = try ShardEngine(modelPath: model, layers: layers, configuration: .init(kvCacheBytes: kvCacheBytes))
            let shard = ShardService(engine: engine, logger: Self.quiet("shard"))
            shard.register(on: server)
            self.shard = shard
        }
        try server.start()
        let server = self.server
        task = Task { try await server.run() }
    }

    /// Stops serving and shuts the shard down; later calls do nothing.
    public func stop() async {
        let first = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        task.cancel()
        _ = await task.result
        shard?.shutdown()
    }
}
