/// Who speaks in a chat turn, as Gemma names it.
public enum ChatRole: String, Sendable, Equatable, CaseIterable {
    /// The person talking to the model.
    case user
    /// The model (OpenAI's "assistant").
    case model
    /// Instructions; Gemma has no system turn, so the template folds them into the first user turn.
    case system

    /// Parses a role name: "user", "model", "assistant" (the same as "model") or "system".
    ///
    /// - Throws: `TokenizerError.unknownChatRole` for anything else.
    public init(name: String) throws {
        switch name {
        case "user": self = .user
        case "model", "assistant": self = .model
        case "system": self = .system
        default: throw TokenizerError.unknownChatRole(name)
        }
    }
}

/// One message of a conversation.
public struct ChatMessage: Sendable, Equatable {
    /// Who speaks.
    public var role: ChatRole
    /// What they say.
    public var content: String

    /// A message with a known role.
    public init(role: ChatRole, content: String) {
        self.role = role
        self.content = content
    }

    /// A message whose role is given by name ("user", "model", "assistant", "system").
    ///
    /// - Throws: `TokenizerError.unknownChatRole` for any other name.
    public init(role name: String, content: String) throws {
        self.init(role: try ChatRole(name: name), content: content)
    }
}
