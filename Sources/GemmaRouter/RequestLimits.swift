/// The bounds the router puts on every request before it uses any of it. Past one the client
/// gets OpenAI error JSON: 413 `request_too_large` for the body, otherwise a 400 naming the
/// parameter.
public enum RequestLimits {
    /// The largest request body in bytes (checked against Content-Length first, then while reading).
    public static let maxBodyBytes = 32 << 20
    /// The deepest nesting of arrays and objects in a request body.
    public static let maxJSONDepth = 64
    /// The most stop sequences: OpenAI allows 4 and vLLM any number; 16 serves clients of both.
    public static let maxStopSequences = 16
    /// The longest stop sequence in UTF-8 bytes.
    public static let maxStopBytes = 1024
    /// The largest max_tokens / max_completion_tokens (the context length bounds it further).
    public static let maxTokens = 1 << 20
    /// The largest top_k (above Gemma's 256,000-token vocabulary; larger means "all" anyway).
    public static let maxTopK = 1 << 20
    /// The most alternatives per token (logprobs, top_logprobs), as OpenAI's API.
    public static let maxLogprobs = 20
    /// How much of a request-supplied string an error message or a log line repeats.
    public static let maxEchoBytes = 200
    /// The longest error message sent back (a backstop: echoed values are bounded already).
    public static let maxErrorMessageBytes = 1024
}

extension String {
    /// At most `maxBytes` UTF-8 bytes of the string, cut on a Unicode scalar boundary, with "..."
    /// appended when anything was cut. Counts bytes, not Characters, so that a megabyte of
    /// combining marks on one base letter is cut too.
    public func boundedForLog(_ maxBytes: Int = RequestLimits.maxEchoBytes) -> String {
        let bytes = utf8
        guard bytes.count > maxBytes else { return self }
        var end = bytes.index(bytes.startIndex, offsetBy: Swift.max(0, maxBytes))
        // Back off continuation bytes (10xxxxxx) to the start of the scalar that crosses the limit.
        while end > bytes.startIndex, bytes[end] & 0xC0 == 0x80 {
            end = bytes.index(before: end)
        }
        return String(decoding: bytes[bytes.startIndex..<end], as: UTF8.self) + "..."
    }
}
