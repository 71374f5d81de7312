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
    var stop: [String] = []
    var seed: UInt64?
    /// nil: no logprobs; otherwise how many alternatives per token.
    var logprobs: Int?
    var stream = false
    var includeUsage = false
    var ignoreEOS = false

    init(_ json: JSONValue, chat: Bool, modelName: String) throws {
        let p = Reader(json: json)
        if let model = try p.string("model"), model != modelName {
            throw OpenAIError(.notFound, "The model '\(model)' does not exist (this server serves '\(modelName)').",
                              param: "model", code: "model_not_found")
        }
        if let n = try p.int("n"), n != 1 { throw OpenAIError.invalid("n", "Only n = 1 is supported.") }
        if let bestOf = try p.int("best_of"), bestOf != 1 { throw OpenAIError.invalid("best_of", "Only best_of = 1 is supported.") }
        if chat {
            guard let value = p.value("messages") else { throw OpenAIError.invalid("messages", "'messages' is a required property.") }
            guard case let .array(items) = value, !items.isEmpty else {
                throw OpenAIError.invalid("messages", "'messages' must be a non-empty array of messages.")
            }
            var messages: [Message] = []
            for (i, item) in items.enumerated() {
                guard case .object = item, case let .string(role)? = item["role"] else {
                    throw OpenAIError.invalid("messages[\(i)].role", "messages[\(i)] must be an object with a 'role'.")
                }
                guard ["user", "assistant", "system", "developer"].contains(role) else {
                    throw OpenAIError.invalid("messages[\(i)].role", "messages[\(i)].role '\(role)' is not one of user, assistant, system.")
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
            prompt = .messages(messages)
        } else {
            let bad = OpenAIError.invalid("prompt", "'prompt' must be a string, an array of one string, or an array of token ids.")
            switch p.value("prompt") {
            case nil: throw OpenAIError.invalid("prompt", "'prompt' is a required property.")
            case let .string(text)?: prompt = .text(text)
            case let .array(items)?:
                if items.count == 1, case let .string(text) = items[0] {
                    prompt = .text(text)
                } else if items.count == 1, case let .array(inner) = items[0] {
                    prompt = .ids(try inner.map { guard case let .int(i) = $0, let id = Int32(exactly: i) else { throw bad }; return id })
                } else if !items.isEmpty, items.allSatisfy({ if case .int = $0 { return true } else { return false } }) {
                    prompt = .ids(try items.map { guard case let .int(i) = $0, let id = Int32(exactly: i) else { throw bad }; return id })
                } else if items.count > 1 {
                    throw OpenAIError.invalid("prompt", "Only one prompt per request is supported.")
                } else {
                    throw bad
                }
            default: throw bad
            }
            if case let .ids(ids) = prompt, ids.isEmpty { throw OpenAIError.invalid("prompt", "The prompt is empty.") }
            if let echo = try p.bool("echo"), echo { throw OpenAIError.invalid("echo", "echo is not supported.") }
            if let suffix = try p.string("suffix"), !suffix.isEmpty { throw OpenAIError.invalid("suffix", "suffix is not supported.") }
        }
        if let t = try p.number("temperature") {
            guard (0...2).contains(t) else { throw OpenAIError.invalid("temperature", "temperature must be between 0 and 2, got \(t).") }
            temperature = t
        }
        if let v = try p.number("top_p") {
            guard v > 0, v <= 1 else { throw OpenAIError.invalid("top_p", "top_p must be in (0, 1], got \(v).") }
            topP = v
        }
        if let k = try p.int("top_k") {
            guard k >= -1 else { throw OpenAIError.invalid("top_k", "top_k must be -1 (all), 0 (all) or positive, got \(k).") }
            topK = max(0, k)
        }
        let maxKey = chat && p.value("max_completion_tokens") != nil ? "max_completion_tokens" : "max_tokens"
        if let m = try p.int(maxKey) {
            guard m >= 1 else { throw OpenAIError.invalid(maxKey, "\(maxKey) must be at least 1, got \(m).") }
            maxTokens = m
        }
        switch p.value("stop") {
        case nil: break
        case let .string(s)?: stop = s.isEmpty ? [] : [s]
        case let .array(items)?:
            stop = try items.map {
                guard case let .string(s) = $0 else { throw OpenAIError.invalid("stop", "stop must be a string or an array of strings.") }
                return s
            }.filter { !$0.isEmpty }
        default: throw OpenAIError.invalid("stop", "stop must be a string or an array of strings.")
        }
        if let s = try p.int("seed") { seed = UInt64(bitPattern: Int64(s)) }
        if chat {
            let want = try p.bool("logprobs") ?? false
            let top = try p.int("top_logprobs")
            if let top {
                guard (0...20).contains(top) else { throw OpenAIError.invalid("top_logprobs", "top_logprobs must be between 0 and 20, got \(top).") }
                guard want else { throw OpenAIError.invalid("top_logprobs", "top_logprobs requires logprobs to be true.") }
            }
            logprobs = want ? (top ?? 0) : nil
        } else if let n = try p.int("logprobs") {
            guard (0...20).contains(n) else { throw OpenAIError.invalid("logprobs", "logprobs must be between 0 and 20, got \(n).") }
            logprobs = n
        }
        stream = try p.bool("stream") ?? false
        if let options = p.value("stream_options") {
            guard case .object = options else { throw OpenAIError.invalid("stream_options", "stream_options must be an object.") }
            switch options["include_usage"] {
            case nil: break
            case let .bool(b)?: includeUsage = b
            default: throw OpenAIError.invalid("stream_options.include_usage", "stream_options.include_usage must be a boolean.")
            }
        }
        ignoreEOS = try p.bool("ignore_eos") ?? false
    }

    /// Typed access to the request's fields; `null` counts as absent.
    struct Reader {
        let json: JSONValue

        func value(_ key: String) -> JSONValue? {
            guard let v = json[key], !v.isNull else { return nil }
            return v
        }

        func number(_ key: String) throws -> Double? {
            switch value(key) {
            case nil: return nil
            case let .int(i)?: return Double(i)
            case let .double(d)?: return d
            default: throw OpenAIError.invalid(key, "\(key) must be a number.")
            }
        }

        func int(_ key: String) throws -> Int? {
            switch value(key) {
            case nil: return nil
            case let .int(i)?: return i
            case let .double(d)? where d == d.rounded() && abs(d) < 1e15: return Int(d)
            default: throw OpenAIError.invalid(key, "\(key) must be an integer.")
            }
        }

        func bool(_ key: String) throws -> Bool? {
            switch value(key) {
            case nil: return nil
            case let .bool(b)?: return b
            default: throw OpenAIError.invalid(key, "\(key) must be a boolean.")
            }
        }

        func string(_ key: String) throws -> String? {
            switch value(key) {
            case nil: return nil
            case let .string(s)?: return s
            default: throw OpenAIError.invalid(key, "\(key) must be a string.")
            }
        }
    }
}
