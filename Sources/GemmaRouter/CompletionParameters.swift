import Foundation

/// The parameters of a completions or chat completions request, checked: a wrong one gets a 400
/// that names it.
struct CompletionParameters: Sendable {
    struct Message: Sendable {
        var role: String
        var content: String
    }

    enum Prompt: Sendable {
        case text(String)
        case ids([Int32])
        case messages([Message])
    }

    var prompt: Prompt
    var temperature = 1.0
    var topP = 1.0
    var topK = 0
    var maxTokens: Int?
    /// The parameter `maxTokens` came from (max_tokens, or max_completion_tokens in a chat).
    var maxTokensParam = "max_tokens"
    var stop: [String] = []
    var seed: UInt64?
    /// nil: no logprobs; otherwise how many alternatives per token.
    var logprobs: Int?
    var stream = false
    var includeUsage = false
    var ignoreEOS = false

    init(_ json: JSONValue, chat: Bool, modelName: String) throws {
        let p = ParameterReader(json: json)
        if let model = try p.string("model"), model != modelName {
            throw OpenAIError(.notFound, "The model '\(model.boundedForLog())' does not exist (this server serves '\(modelName)').",
                              param: "model", code: "model_not_found")
        }
        if let n = try p.int("n", in: Int.min...Int.max), n != 1 { throw OpenAIError.invalid("n", "Only n = 1 is supported.") }
        if let bestOf = try p.int("best_of", in: Int.min...Int.max), bestOf != 1 {
            throw OpenAIError.invalid("best_of", "Only best_of = 1 is supported.")
        }
        if chat {
            prompt = .messages(try Self.messages(p.value("messages")))
        } else {
            prompt = try Self.prompt(p.value("prompt"))
            if let echo = try p.bool("echo"), echo { throw OpenAIError.invalid("echo", "echo is not supported.") }
            if let suffix = try p.string("suffix"), !suffix.isEmpty { throw OpenAIError.invalid("suffix", "suffix is not supported.") }
        }
        temperature = try p.number("temperature", in: 0...2) ?? 1
        if let v = try p.number("top_p", in: 0...1) {
            guard v > 0 else { throw OpenAIError.invalid("top_p", "top_p must be in (0, 1], got \(v).") }
            topP = v
        }
        // Accepted for compatibility (OpenAI's range), not applied.
        _ = try p.number("frequency_penalty", in: -2...2)
        _ = try p.number("presence_penalty", in: -2...2)
        if let k = try p.int("top_k", in: -1...RequestLimits.maxTopK) { topK = max(0, k) }
        let tokenBound = 1...RequestLimits.maxTokens
        let legacyMax = try p.int("max_tokens", in: tokenBound)
        if chat, let m = try p.int("max_completion_tokens", in: tokenBound) {
            maxTokens = m
            maxTokensParam = "max_completion_tokens"
        } else {
            maxTokens = legacyMax
        }
        stop = try p.stop()
        seed = try p.seed("seed")
        let logprobBound = 0...RequestLimits.maxLogprobs
        if chat {
            let want = try p.bool("logprobs") ?? false
            let top = try p.int("top_logprobs", in: logprobBound)
            if top != nil, !want { throw OpenAIError.invalid("top_logprobs", "top_logprobs requires logprobs to be true.") }
            logprobs = want ? (top ?? 0) : nil
        } else {
            logprobs = try p.int("logprobs", in: logprobBound)
        }
        stream = try p.bool("stream") ?? false
        if let options = p.value("stream_options") {
            guard case .object = options else { throw OpenAIError.invalid("stream_options", "stream_options must be an object.") }
            switch options["include_usage"] {
            case nil, .null?: break
            case let .bool(b)?: includeUsage = b
            default: throw OpenAIError.invalid("stream_options.include_usage", "stream_options.include_usage must be a boolean.")
            }
        }
        ignoreEOS = try p.bool("ignore_eos") ?? false
    }

    /// The chat conversation: a non-empty array of {role, content} with text content.
    static func messages(_ value: JSONValue?) throws -> [Message] {
        guard let value else { throw OpenAIError.invalid("messages", "'messages' is a required property.") }
        guard case let .array(items) = value, !items.isEmpty else {
            throw OpenAIError.invalid("messages", "'messages' must be a non-empty array of messages.")
        }
        var messages: [Message] = []
        for (i, item) in items.enumerated() {
            guard case .object = item, case let .string(role)? = item["role"] else {
                throw OpenAIError.invalid("messages[\(i)].role", "messages[\(i)] must be an object with a string 'role'.")
            }
            guard ["user", "assistant", "system", "developer"].contains(role) else {
                throw OpenAIError.invalid("messages[\(i)].role",
                                          "messages[\(i)].role '\(role.boundedForLog())' is not one of user, assistant, system, developer.")
            }
            let content: String
            switch item["content"] {
            case let .string(text)?: content = text
            case .null?, nil: content = ""
            case let .array(parts)?:
                content = try parts.map { part -> String in
                    guard case .string("text")? = part["type"], case let .string(text)? = part["text"] else {
                        throw OpenAIError.invalid("messages[\(i)].content", "Only text content parts are supported.")
                    }
                    return text
                }.joined(separator: "\n")
            default:
                throw OpenAIError.invalid("messages[\(i)].content", "messages[\(i)].content must be a string or an array of text parts.")
            }
            messages.append(Message(role: role == "developer" ? "system" : role, content: content))
        }
        return messages
    }

    /// A completions prompt: a string, an array of one string, or token ids (flat or one array
    /// of them), each id within Int32.
    static func prompt(_ value: JSONValue?) throws -> Prompt {
        let bad = OpenAIError.invalid("prompt", "'prompt' must be a string, an array of one string, or an array of token ids.")
        func ids(_ items: [JSONValue]) throws -> Prompt {
            let ids = try items.map { item -> Int32 in
                guard case let .int(i) = item else { throw bad }
                guard let id = Int32(exactly: i) else {
                    throw OpenAIError.invalid("prompt", "Token id \(i) is outside the vocabulary.")
                }
                return id
            }
            guard !ids.isEmpty else { throw OpenAIError.invalid("prompt", "The prompt is empty.") }
            return .ids(ids)
        }
        switch value {
        case nil: throw OpenAIError.invalid("prompt", "'prompt' is a required property.")
        case let .string(text)?: return .text(text)
        case let .array(items)?:
            if items.count == 1, case let .string(text) = items[0] { return .text(text) }
            if items.count == 1, case let .array(inner) = items[0] { return try ids(inner) }
            if let first = items.first, case .int = first { return try ids(items) }
            if items.count > 1, items.allSatisfy({ if case .string = $0 { return true } else { return false } }) {
                throw OpenAIError.invalid("prompt", "Only one prompt per request is supported.")
            }
            if items.count > 1, items.allSatisfy({ if case .array = $0 { return true } else { return false } }) {
                throw OpenAIError.invalid("prompt", "Only one prompt per request is supported.")
            }
            throw bad
        default: throw bad
        }
    }
}
