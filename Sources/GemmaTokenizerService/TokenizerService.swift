import Foundation
import GemmaTokenizer
import GemmaWire
import Logging

/// The `gemma.v1.Tokenizer` service: one `GemmaTokenizer` behind the wire. Stateless, so
/// replicas are interchangeable.
public final class TokenizerService: Sendable {
    /// The tokenizer served.
    public let tokenizer: GemmaTokenizer
    /// SHA-256 of the tokenizer.model bytes (64 lowercase hex digits).
    public let fingerprint: String
    private let detokenizer: StatelessDetokenizer

    /// Serves `tokenizer`, reporting `fingerprint` (the hash of its model file).
    public init(tokenizer: GemmaTokenizer, fingerprint: String) {
        self.tokenizer = tokenizer
        self.fingerprint = fingerprint
        self.detokenizer = StatelessDetokenizer(tokenizer: tokenizer)
    }

    /// Loads `tokenizer.model` from a file, or from a directory that holds one, and hashes it.
    ///
    /// - Throws: `TokenizerError` naming the file when it is missing or not a model.
    public convenience init(contentsOf path: String) throws {
        var isDirectory: ObjCBool = false
        var file = path
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            file = URL(fileURLWithPath: path).appendingPathComponent("tokenizer.model").path
        }
        let tokenizer = try GemmaTokenizer(contentsOf: file)
        try self.init(tokenizer: tokenizer, fingerprint: SHA256.hexDigest(ofFile: file))
    }

    /// Registers the four methods on `server`.
    ///
    /// Small requests are answered on the server's task; large batches run on a Dispatch
    /// worker thread, so that minutes of CPU work never occupy the few threads that Swift
    /// concurrency (and with it every other request, and the shutdown signal) runs on.
    public func register(on server: RPCServer) {
        server.register(TokenizerRPC.encode) { request, _ in
            let bytes = request.texts.reduce(0) { $0 + $1.utf8.count }
            return try await Self.run(large: bytes > Self.largeTextBytes) { self.encode(request) }
        }
        server.register(TokenizerRPC.detokenize) { request, _ in
            let tokens = request.sequences.reduce(0) { $0 + $1.tokenIds.count }
            return try await Self.run(large: tokens > Self.largeTokenCount) { try self.detokenize(request) }
        }
        server.register(TokenizerRPC.applyChatTemplate) { request, _ in
            let bytes = request.messages.reduce(0) { $0 + $1.content.utf8.count }
            return try await Self.run(large: bytes > Self.largeTextBytes) { try self.applyChatTemplate(request) }
        }
        server.register(TokenizerRPC.info) { _, _ in self.info() }
    }

    /// Text above this many bytes in one request is encoded on a worker thread.
    static let largeTextBytes = 64 << 10
    /// More ids than this in one Detokenize request are decoded on a worker thread.
    static let largeTokenCount = 16 << 10

    /// Runs `work` here, or on a Dispatch worker thread when it is `large`.
    private static func run<T: Sendable>(large: Bool, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        guard large else { return try work() }
        let result: Result<T, any Error> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: Result { try work() })
            }
        }
        return try result.get()
    }

    /// Encodes every text.
    public func encode(_ request: Gemma_V1_EncodeRequest) -> Gemma_V1_EncodeReply {
        var reply = Gemma_V1_EncodeReply()
        reply.sequences = request.texts.map { text in
            var ids = Gemma_V1_TokenIds()
            ids.ids = tokenizer.encode(text, addBOS: request.addBos)
            return ids
        }
        return reply
    }

    /// Advances every sequence by its new ids.
    ///
    /// - Throws: `RPCError` INVALID_ARGUMENT naming the sequence whose `pending` is not valid.
    public func detokenize(_ request: Gemma_V1_DetokenizeRequest) throws(RPCError) -> Gemma_V1_DetokenizeReply {
        var reply = Gemma_V1_DetokenizeReply()
        reply.sequences.reserveCapacity(request.sequences.count)
        for (index, sequence) in request.sequences.enumerated() {
            let state = StatelessDetokenizer.State(pending: [UInt8](sequence.pending), started: sequence.started)
            let step: (text: String, state: StatelessDetokenizer.State)
            do {
                step = try detokenizer.step(sequence.tokenIds, state: state, finish: sequence.finish)
            } catch {
                throw RPCError(error.code, "sequences[\(index)] (sequence_id \(sequence.sequenceID)): \(error.message)")
            }
            var result = Gemma_V1_DetokenizeResult()
            result.sequenceID = sequence.sequenceID
            result.text = step.text
            result.pending = Data(step.state.pending)
            result.started = step.state.started
            reply.sequences.append(result)
        }
        return reply
    }

    /// Renders and encodes a conversation.
    ///
    /// - Throws: `RPCError` INVALID_ARGUMENT for an unknown role or a malformed conversation,
    ///   FAILED_PRECONDITION when the model lacks the chat pieces.
    public func applyChatTemplate(_ request: Gemma_V1_ApplyChatTemplateRequest) throws(RPCError) -> Gemma_V1_ApplyChatTemplateReply {
        do {
            let messages = try request.messages.map { try ChatMessage(role: $0.role, content: $0.content) }
            var reply = Gemma_V1_ApplyChatTemplateReply()
            reply.text = try tokenizer.renderChat(messages, addGenerationPrompt: request.addGenerationPrompt)
            reply.ids = try tokenizer.encodeChat(messages, addGenerationPrompt: request.addGenerationPrompt)
            return reply
        } catch let error as TokenizerError {
            switch error {
            case .missingChatPiece: throw RPCError(.failedPrecondition, error.description)
            default: throw RPCError(.invalidArgument, error.description)
            }
        } catch {
            throw RPCError(.internal, "\(error)")
        }
    }

    /// The vocabulary size, special ids and fingerprint.
    public func info() -> Gemma_V1_TokenizerInfo {
        var info = Gemma_V1_TokenizerInfo()
        info.vocabSize = UInt32(tokenizer.vocabularySize)
        info.bosID = tokenizer.bos
        info.eosID = tokenizer.eos
        info.padID = tokenizer.pad ?? -1
        info.startOfTurnID = tokenizer.startOfTurn ?? -1
        info.endOfTurnID = tokenizer.endOfTurn ?? -1
        info.stopIds = tokenizer.stopTokens
        info.modelFingerprint = fingerprint
        return info
    }
}
