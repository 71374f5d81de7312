import Foundation

/// One hostile request (all its bytes) and what may come back.
struct FuzzCase: Sendable {
    var name: String
    var bytes: [UInt8]
    /// Garbage at the HTTP level: the HTTP parser's own bare 400, or a closed connection, is
    /// a fine answer (the router never sees the request).
    var httpGarbage = false

    static func request(_ name: String, _ method: String, _ path: String, body: [UInt8]? = nil,
                        headers: String = "") -> FuzzCase {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + headers
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        return FuzzCase(name: name, bytes: Array((head + "\r\n").utf8) + (body ?? []))
    }

    static func post(_ name: String, _ path: String, _ body: [UInt8]) -> FuzzCase { request(name, "POST", path, body: body) }
    static func post(_ name: String, _ path: String, _ body: String) -> FuzzCase { post(name, path, Array(body.utf8)) }
}

/// The hostile requests of `HTTPFuzzTests`, made from a few well-formed ones.
enum FuzzCases {
    static let completions = "/v1/completions"
    static let chat = "/v1/chat/completions"
    static let completionBase = [("prompt", #""Hi""#), ("max_tokens", "2"), ("temperature", "0")]
    static let chatBase = [("messages", #"[{"role": "user", "content": "Hi"}]"#), ("max_completion_tokens", "2"),
                           ("max_tokens", "2"), ("temperature", "0")]
    static let completionFields = ["model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "n", "best_of", "seed",
                                   "logprobs", "stop", "stream", "stream_options", "ignore_eos", "echo", "suffix",
                                   "frequency_penalty", "presence_penalty"]
    static let chatFields = ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "n",
                             "seed", "logprobs", "top_logprobs", "stop", "stream", "stream_options", "ignore_eos"]
    /// Numbers at the limits of Int64, UInt64 and Double, and every JSON type.
    static let values = ["9223372036854775807", "-9223372036854775808", "18446744073709551615", "18446744073709551616",
                         "1e308", "-1e308", "1e400", "-1e400", "-0.0", "0.5", "-1", "0", "1", "4294967296", "1e-400",
                         "123456789012345678901234567890", #""1""#, #""true""#, "true", "false", "null", "[]", "{}",
                         "[1, 2]", #"["a"]"#, #"{"include_usage": 1e400}"#, #""""#]

    /// A JSON object from fields given as raw JSON text; `key` set to `raw` (added when new).
    static func body(_ base: [(String, String)], _ key: String? = nil, _ raw: String = "") -> String {
        var fields = base
        if let key {
            if let i = fields.firstIndex(where: { $0.0 == key }) { fields[i].1 = raw } else { fields.append((key, raw)) }
        }
        return "{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
    }

    /// Every parameter of both endpoints set to every value of `values`, and the parts of a message.
    static func parameters() -> [FuzzCase] {
        var cases: [FuzzCase] = []
        for (path, base, fields) in [(completions, completionBase, completionFields), (chat, chatBase, chatFields)] {
            for field in fields {
                for value in values { cases.append(.post("\(path) \(field)=\(value)", path, body(base, field, value))) }
            }
        }
        for value in values {
            for message in [#"[{"role": \#(value), "content": "Hi"}]"#, #"[{"role": "user", "content": \#(value)}]"#,
                            #"[{"role": "user", "content": [{"type": \#(value), "text": "a"}]}]"#,
                            #"[{"role": "user", "content": [{"type": "text", "text": \#(value)}]}]"#, "[\(value)]"] {
                cases.append(.post("messages=\(message)", chat, body(chatBase, "messages", message)))
            }
            cases.append(.post("prompt=[2, \(value)]", completions, body(completionBase, "prompt", "[2, \(value)]")))
            cases.append(.post("prompt=[[\(value)]]", completions, body(completionBase, "prompt", "[[\(value)]]")))
        }
        return cases
    }

    /// Deep nesting, invalid UTF-8, huge strings and arrays, truncated JSON.
    static func bodies(_ random: inout FuzzRandom) -> [FuzzCase] {
        var cases: [FuzzCase] = []
        let deep = 10_000
        let nested = [String(repeating: "[", count: deep) + String(repeating: "]", count: deep),
                      String(repeating: #"{"a": "#, count: deep) + "1" + String(repeating: "}", count: deep),
                      String(repeating: "[", count: deep)]
        for (i, text) in nested.enumerated() {
            cases.append(.post("deep \(i) top level", completions, text))
            cases.append(.post("deep \(i) in prompt", completions, body(completionBase, "prompt", text)))
            cases.append(.post("deep \(i) in messages", chat, body(chatBase, "messages", text)))
            cases.append(.post("deep \(i) in stop", chat, body(chatBase, "stop", text)))
        }
        let invalid: [[UInt8]] = [[0xFF], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0x80], [0x00]]
        for (i, bytes) in invalid.enumerated() {
            for (path, base, key) in [(completions, completionBase, "prompt"), (completions, completionBase, "model"),
                                      (chat, chatBase, "stop"), (completions, completionBase, "")] {
                let text = body(base, key.isEmpty ? nil : key, "\"\u{1}\"")
                let parts = text.split(separator: "\u{1}", omittingEmptySubsequences: false).map { Array($0.utf8) }
                let spliced = parts.count == 2 ? parts[0] + bytes + parts[1] : Array(text.utf8).dropLast() + [UInt8(ascii: ",")] + bytes + Array("}".utf8)
                cases.append(.post("invalid UTF-8 \(i) in \(key.isEmpty ? "structure" : key)", path, Array(spliced)))
            }
            let role = Array(#"{"messages": [{"role": "user", "content": ""#.utf8) + bytes + Array(#""}]}"#.utf8)
            cases.append(.post("invalid UTF-8 \(i) in content", chat, role))
        }
        for escape in [#"\ud800"#, #"\udc00\ud800"#, #"\u0000"#, #"\uZZZZ"#, #"\"#, #"\x41"#] {
            cases.append(.post("escape \(escape)", completions, body(completionBase, "prompt", "\"\(escape)\"")))
        }
        let megabyte = String(repeating: "a", count: 1 << 20)
        let digits = String(repeating: "9", count: 1 << 20)
        for (path, base, key, raw) in [(completions, completionBase, "prompt", "\"\(megabyte)\""),
                                       (completions, completionBase, "model", "\"\(megabyte)\""),
                                       (completions, completionBase, "stop", "\"\(megabyte)\""),
                                       (completions, completionBase, "seed", digits),
                                       (completions, completionBase, "max_tokens", "0.\(digits)"),
                                       (completions, completionBase, megabyte, "1"),
                                       (chat, chatBase, "messages", #"[{"role": "\#(megabyte)", "content": "a"}]"#),
                                       (chat, chatBase, "messages", #"[{"role": "user", "content": "\#(megabyte)"}]"#)] {
            cases.append(.post("1 MB \(key.prefix(20))", path, body(base, key, raw)))
        }
        cases.append(.post("1 MB whitespace", completions, String(repeating: " ", count: 1 << 20) + body(completionBase)))
        let many = 100_000
        for (path, base, key, item) in [(completions, completionBase, "prompt", "2"), (completions, completionBase, "prompt", #""a""#),
                                        (completions, completionBase, "stop", #""a""#),
                                        (chat, chatBase, "messages", #"{"role": "user", "content": "a"}"#)] {
            let array = "[" + Array(repeating: item, count: many).joined(separator: ",") + "]"
            cases.append(.post("100k \(key) \(item)", path, body(base, key, array)))
        }
        for (path, text) in [(completions, body(completionBase + [("stop", #"["a", "b"]"#), ("logprobs", "2")])),
                             (chat, body(chatBase + [("logprobs", "true"), ("stream", "true")]))] {
            let bytes = Array(text.utf8)
            for _ in 0..<20 {
                let cut = Int.random(in: 0..<bytes.count, using: &random)
                cases.append(.post("\(path) truncated at \(cut)", path, Array(bytes[..<cut])))
            }
        }
        return cases
    }

    /// `count` well-formed requests with 1 to 6 random byte mutations each.
    static func mutations(count: Int, _ random: inout FuzzRandom) -> [FuzzCase] {
        let seeds = [(completions, body(completionBase + [("stop", #"["\n", "x"]"#), ("seed", "7"), ("top_k", "5"), ("logprobs", "1")])),
                     (chat, body(chatBase + [("stream", "true"), ("stream_options", #"{"include_usage": true}"#), ("top_p", "0.9")])),
                     (chat, body(chatBase, "messages", #"[{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}]"#)),
                     (completions, body(completionBase, "prompt", "[2, 17, 30]"))]
        let tokens = values.map { Array($0.utf8) } + [Array("[[[[".utf8), Array("\"".utf8), Array("\\".utf8), [0xFF, 0xFE]]
        return (0..<count).map { n in
            let (path, text) = seeds[Int.random(in: 0..<seeds.count, using: &random)]
            var bytes = Array(text.utf8)
            for _ in 0...Int.random(in: 0..<6, using: &random) {
                let at = Int.random(in: 0..<bytes.count, using: &random)
                switch Int.random(in: 0..<5, using: &random) {
                case 0: bytes[at] = UInt8.random(in: 0...255, using: &random)
                case 1: bytes.insert(UInt8.random(in: 0...255, using: &random), at: at)
                case 2: if bytes.count > 1 { bytes.remove(at: at) }
                case 3: bytes.insert(contentsOf: bytes[at..<min(bytes.count, at + 16)], at: at)
                default: bytes.insert(contentsOf: tokens[Int.random(in: 0..<tokens.count, using: &random)], at: at)
                }
            }
            return .post("mutation \(n) of \(path)", path, bytes)
        }
    }

    /// Every route, unknown paths and wrong methods.
    static func routes() -> [FuzzCase] {
        var cases: [FuzzCase] = []
        let paths = ["/v1/models", "/v1/models/tiny", "/v1/models/gpt-4", "/v1/models/%00%ff", "/v1/models/..%2F..%2Fetc",
                     "/v1/models/" + String(repeating: "q", count: 4000), "/v1/models?x=%ff&&&=", "/health", "/metrics",
                     "/", "/v1", "/v1/nothing", "/v1/completions/extra", "/%ff%fe", "/" + String(repeating: "p/", count: 2000),
                     completions, chat]
        for path in paths {
            for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
                let body: [UInt8]? = method == "GET" || method == "DELETE" ? nil : Array(body(completionBase).utf8)
                cases.append(.request("\(method) \(path.prefix(60))", method, path, body: body))
            }
        }
        return cases
    }

    /// Requests the HTTP parser refuses before the router sees them.
    static func httpGarbage() -> [FuzzCase] {
        let body = body(completionBase)
        let heads = ["GARBAGE\r\n\r\n", "GET / HTTP/9.9\r\n\r\n", "GET /health HTTP/1.1\r\nno colon here\r\n\r\n",
                     "GET /health HTTP/1.1\r\nX-Big: \(String(repeating: "b", count: 100_000))\r\n\r\n",
                     "POST /v1/completions HTTP/1.1\r\nContent-Length: abc\r\n\r\n\(body)",
                     "POST /v1/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n\(body)",
                     "POST /v1/completions HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n\(body)",
                     "POST /v1/completions HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n\(body)",
                     "POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\(body)\r\n0\r\n\r\n",
                     "POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n\(body)\r\n0\r\n\r\n",
                     "GET /he\0alth HTTP/1.1\r\n\r\n", "\r\n\r\n\r\n"]
        return heads.enumerated().map { FuzzCase(name: "HTTP garbage \($0.offset)", bytes: Array($0.element.utf8), httpGarbage: true) }
    }
}
