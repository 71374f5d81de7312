/// Gemma's chat prompt format, rendered as llama.cpp's `LLM_CHAT_TEMPLATE_GEMMA` does
/// (`llm_chat_apply_template` in llama.cpp's `src/llama-chat.cpp`):
///
/// ```
/// <start_of_turn>user
/// {user text}<end_of_turn>
/// <start_of_turn>model
/// {model text}<end_of_turn>
/// <start_of_turn>model
/// ```
///
/// Like llama.cpp, every content is trimmed of ASCII whitespace (C `isspace`: space, tab,
/// newline, vertical tab, form feed, carriage return), and system messages, which Gemma
/// lacks, are trimmed, concatenated and put at the start of the first user turn followed
/// by a blank line. The `<bos>` token is not part of the text.
///
/// Unlike llama.cpp, which renders any sequence, the conversation must be well formed
/// (Hugging Face's Gemma template enforces the same alternation): optional system messages
/// first, then turns alternating user, model, user, ... starting with user; a generation
/// prompt may only follow a user turn.
public enum GemmaChatTemplate {
    /// Renders a conversation as Gemma prompt text (without `<bos>`).
    ///
    /// - Parameter addGenerationPrompt: append `<start_of_turn>model\n` so the model answers.
    /// - Throws: `TokenizerError.invalidConversation` when the conversation is empty, a
    ///   system message follows a turn, turns do not alternate starting with user, or a
    ///   generation prompt would follow a model turn.
    public static func render(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        try validate(messages, addGenerationPrompt: addGenerationPrompt)
        var text = ""
        var systemPrompt = ""
        for message in messages {
            let role: String
            switch message.role {
            case .system:
                systemPrompt += trimmed(message.content)
                continue
            case .user: role = "user"
            case .model: role = "model"
            }
            text += "<start_of_turn>" + role + "\n"
            if !systemPrompt.isEmpty && message.role != .model {
                text += systemPrompt + "\n\n"
                systemPrompt = ""
            }
            text += trimmed(message.content) + "<end_of_turn>\n"
        }
        if addGenerationPrompt {
            text += "<start_of_turn>model\n"
        }
        return text
    }

    private static func validate(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws {
        let firstTurn = messages.firstIndex { $0.role != .system }
        guard let firstTurn else {
            throw TokenizerError.invalidConversation(reason: messages.isEmpty
                ? "no messages" : "only system messages; a user message is needed")
        }
        var expected = ChatRole.user
        for (index, message) in messages.enumerated().dropFirst(firstTurn) {
            if message.role == .system {
                throw TokenizerError.invalidConversation(
                    reason: "message \(index) is a system message after the conversation started; "
                        + "system messages must come first")
            }
            guard message.role == expected else {
                throw TokenizerError.invalidConversation(
                    reason: "message \(index) has role \(message.role.rawValue) but \(expected.rawValue) was expected; "
                        + "turns must alternate user, model, user, ... starting with user")
            }
            expected = expected == .user ? .model : .user
        }
        if addGenerationPrompt && messages.last?.role == .model {
            throw TokenizerError.invalidConversation(
                reason: "a generation prompt must follow a user message, but the last message is from the model")
        }
    }

    /// Trims what C's `isspace` accepts in the "C" locale, as llama.cpp's `trim` does.
    static func trimmed(_ text: String) -> String {
        func isCSpace(_ scalar: Unicode.Scalar) -> Bool {
            switch scalar.value {
            case 0x20, 0x09 ... 0x0D: return true
            default: return false
            }
        }
        let scalars = text.unicodeScalars
        guard let start = scalars.firstIndex(where: { !isCSpace($0) }),
              let last = scalars.lastIndex(where: { !isCSpace($0) }) else { return "" }
        return String(scalars[start ... last])
    }
}

extension GemmaTokenizer {
    /// Renders a conversation with `GemmaChatTemplate` (text without `<bos>`).
    public func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        try GemmaChatTemplate.render(messages, addGenerationPrompt: addGenerationPrompt)
    }

    /// Renders and encodes a conversation: `[bos] + encode(rendered text)`.
    ///
    /// - Throws: `TokenizerError.invalidConversation` for a malformed conversation and
    ///   `TokenizerError.missingChatPiece` when the model lacks `<start_of_turn>` or `<end_of_turn>`
    ///   (the markers would otherwise be spelled out as ordinary text).
    public func encodeChat(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> [Int32] {
        guard startOfTurn != nil else {
            throw TokenizerError.missingChatPiece(piece: Self.startOfTurnPiece, source: model.source)
        }
        guard endOfTurn != nil else {
            throw TokenizerError.missingChatPiece(piece: Self.endOfTurnPiece, source: model.source)
        }
        let text = try renderChat(messages, addGenerationPrompt: addGenerationPrompt)
        return encode(text, addBOS: true)
    }
}
