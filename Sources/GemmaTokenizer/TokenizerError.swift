import Foundation

/// Everything that can go wrong while loading a tokenizer or building a chat prompt.
///
/// Each case carries the file, piece, role or position involved, and `description`
/// says what to do about it.
public enum TokenizerError: Error, Equatable, Sendable, CustomStringConvertible, LocalizedError {
    /// The tokenizer model file (or `tokenizer.model` inside a directory) does not exist.
    case fileNotFound(path: String)
    /// SentencePiece could not load the model; `source` is the file path or a description
    /// of the in-memory bytes, `reason` is SentencePiece's own message.
    case invalidModel(source: String, reason: String)
    /// The model defines no piece for a token the Gemma tokenizer needs (`bos`, `eos`, ...).
    case missingSpecialToken(name: String, source: String)
    /// A chat message used a role other than user, model, assistant or system.
    case unknownChatRole(String)
    /// The conversation's shape is not one the Gemma chat template can express.
    case invalidConversation(reason: String)
    /// The chat template needs a piece (`<start_of_turn>` / `<end_of_turn>`) the model lacks.
    case missingChatPiece(piece: String, source: String)

    /// A message naming the problem and the file or value involved.
    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "tokenizer model not found: \(path) (pass a tokenizer.model file or a directory containing one)"
        case .invalidModel(let source, let reason):
            return "cannot load SentencePiece model \(source): \(reason)"
        case .missingSpecialToken(let name, let source):
            return "SentencePiece model \(source) defines no \(name) token"
        case .unknownChatRole(let role):
            return "unknown chat role \"\(role)\" (expected user, model, assistant or system)"
        case .invalidConversation(let reason):
            return "invalid Gemma conversation: \(reason)"
        case .missingChatPiece(let piece, let source):
            return "SentencePiece model \(source) has no \(piece) piece, so it cannot encode Gemma chat prompts"
        }
    }

    /// Same as `description`, so `localizedDescription` is informative too.
    public var errorDescription: String? { description }
}
