import Foundation
@testable import GemmaRouter
import Hummingbird
import HummingbirdTesting
import XCTest

/// The known crashes of the hardening issue, and the limits on every parameter, the body, the
/// nesting and what error messages repeat from the request.
final class HardeningTests: RouterTestCase {
    // MARK: The known crashes

    /// `prompt.count + maxTokens` trapped on overflow (signal 4) for max_tokens Int64.max.
    func testMaxTokensInt64MaxIsA400OnBothEndpoints() async throws {
        let router = try makeRouter()
        try await app(router).test(.router) { client in
            try assertError(try await post(client, "/v1/completions", #"{"prompt": "Hi", "max_tokens": 9223372036854775807}"#),
                            .badRequest, param: "max_tokens")
            let messages = #""messages": [{"role": "user", "content": "Hi"}]"#
            try assertError(try await post(client, "/v1/chat/completions", #"{\#(messages), "max_tokens": 9223372036854775807}"#),
                            .badRequest, param: "max_tokens")
            try assertError(try await post(client, "/v1/chat/completions", #"{\#(messages), "max_completion_tokens": 9223372036854775807}"#),
                            .badRequest, param: "max_completion_tokens")
            // Within the bound but past the context: the context check names the parameter it came from.
            try assertError(try await post(client, "/v1/chat/completions", #"{\#(messages), "max_completion_tokens": 1048576}"#),
                            .badRequest, param: "max_completion_tokens")
            let ok = try await post(client, "/v1/completions", #"{"prompt": "Hi", "max_tokens": 3, "ignore_eos": true}"#)
            XCTAssertEqual(ok.status, .ok, String(buffer: ok.body))
        }
    }

    /// `UInt32(params.topK)` trapped for top_k 5e9.
    func testTopKFiveBillionIsA400() async throws {
        let router = try makeRouter()
        try await app(router).test(.router) { client in
            for value in ["5000000000", "5e9", "4294967296", "1048577", "-2", "1e400"] {
                try assertError(try await post(client, "/v1/completions", #"{"prompt": "Hi", "top_k": \#(value)}"#),
                                .badRequest, param: "top_k")
            }
            let ok = try await post(client, "/v1/completions", #"{"prompt": "Hi", "max_tokens": 2, "top_k": 1048576}"#)
            XCTAssertEqual(ok.status, .ok, String(buffer: ok.body))
        }
    }

    /// A 40 MB body was a 500; it is a 413 with OpenAI's error JSON, whether the Content-Length
    /// announces it or the body only turns out too large while being read.
    func testFortyMegabyteBodyIs413() async throws {
        let router = try makeRouter()
        let big = #"{"prompt": ""# + String(repeating: "a", count: 40 << 20) + #""}"#
        try await app(router).test(.router) { client in
            for headers: HTTPFields in [[.contentType: "application/json"],
                                        [.contentType: "application/json", .contentLength: String(big.utf8.count)]] {
                let response = try await post(client, "/v1/completions", big, headers: headers)
                try assertError(response, .contentTooLarge)
                let error = try XCTUnwrap(try object(response)["error"] as? [String: Any])
                XCTAssertEqual(error["code"] as? String, "request_too_large")
                XCTAssertTrue(error["param"] is NSNull)
            }
            let ok = try await post(client, "/v1/completions", #"{"prompt": "Hi", "max_tokens": 2}"#)
            XCTAssertEqual(ok.status, .ok, String(buffer: ok.body))
        }
    }

    // MARK: Parameters

    func testEveryParameterIsRangeChecked() async throws {
        let router = try makeRouter()
        let chat = #""messages": [{"role": "user", "content": "Hi"}]"#
        let cases: [(path: String, body: String, param: String)] = [
            ("/v1/completions", #"{"prompt": "x", "max_tokens": -1}"#, "max_tokens"),
            ("/v1/completions", #"{"prompt": "x", "max_tokens": 0.5}"#, "max_tokens"),
            ("/v1/completions", #"{"prompt": "x", "max_tokens": 18446744073709551615}"#, "max_tokens"),
            ("/v1/completions", #"{"prompt": "x", "max_tokens": 18446744073709551616}"#, "max_tokens"),
            ("/v1/completions", #"{"prompt": "x", "max_tokens": 1e308}"#, "max_tokens"),
            ("/v1/completions", #"{"prompt": "x", "max_tokens": -1e308}"#, "max_tokens"),
            ("/v1/completions", #"{"prompt": "x", "max_tokens": 1e400}"#, "max_tokens"),
            ("/v1/completions", #"{"prompt": "x", "max_tokens": "16"}"#, "max_tokens"),
            ("/v1/completions", #"{"prompt": "x", "max_tokens": 1048577}"#, "max_tokens"),
            ("/v1/completions", #"{"prompt": "x", "temperature": 1e400}"#, "temperature"),
            ("/v1/completions", #"{"prompt": "x", "temperature": -1e-3}"#, "temperature"),
            ("/v1/completions", #"{"prompt": "x", "top_p": 1e308}"#, "top_p"),
            ("/v1/completions", #"{"prompt": "x", "top_p": -0.0}"#, "top_p"),
            ("/v1/completions", #"{"prompt": "x", "n": 9223372036854775807}"#, "n"),
            ("/v1/completions", #"{"prompt": "x", "n": 1e400}"#, "n"),
            ("/v1/completions", #"{"prompt": "x", "best_of": 2}"#, "best_of"),
            ("/v1/completions", #"{"prompt": "x", "logprobs": 21}"#, "logprobs"),
            ("/v1/completions", #"{"prompt": "x", "logprobs": -9223372036854775808}"#, "logprobs"),
            ("/v1/completions", #"{"prompt": "x", "frequency_penalty": 3}"#, "frequency_penalty"),
            ("/v1/completions", #"{"prompt": "x", "presence_penalty": "no"}"#, "presence_penalty"),
            ("/v1/completions", #"{"prompt": "x", "stream": "true"}"#, "stream"),
            ("/v1/completions", #"{"prompt": "x", "ignore_eos": 1}"#, "ignore_eos"),
            ("/v1/completions", #"{"prompt": "x", "echo": "false"}"#, "echo"),
            ("/v1/completions", #"{"prompt": "x", "seed": 18446744073709551616}"#, "seed"),
            ("/v1/completions", #"{"prompt": "x", "seed": 0.5}"#, "seed"),
            ("/v1/completions", #"{"prompt": "x", "seed": "1"}"#, "seed"),
            ("/v1/completions", #"{"prompt": "x", "seed": 1e400}"#, "seed"),
            ("/v1/completions", #"{"prompt": [2, 2147483648]}"#, "prompt"),
            ("/v1/completions", #"{"prompt": [2, -2147483649]}"#, "prompt"),
            ("/v1/completions", #"{"prompt": [2, 18446744073709551615]}"#, "prompt"),
            ("/v1/completions", #"{"prompt": [2, 0.5]}"#, "prompt"),
            ("/v1/completions", #"{"prompt": [[]]}"#, "prompt"),
            ("/v1/completions", #"{"prompt": [2, -1]}"#, "prompt"),
            ("/v1/completions", #"{"prompt": true}"#, "prompt"),
            ("/v1/chat/completions", #"{\#(chat), "top_logprobs": 21, "logprobs": true}"#, "top_logprobs"),
            ("/v1/chat/completions", #"{\#(chat), "logprobs": 1}"#, "logprobs"),
            ("/v1/chat/completions", #"{\#(chat), "max_completion_tokens": 0}"#, "max_completion_tokens"),
            ("/v1/chat/completions", #"{\#(chat), "stream_options": {"include_usage": "yes"}}"#, "stream_options.include_usage"),
            ("/v1/chat/completions", #"{"messages": [{"role": 5}]}"#, "messages[0].role"),
            ("/v1/chat/completions", #"{"messages": [{"role": "user", "content": 5}]}"#, "messages[0].content"),
            ("/v1/chat/completions", #"{"messages": "Hi"}"#, "messages"),
        ]
        try await app(router).test(.router) { client in
            for c in cases {
                let response = try await post(client, c.path, c.body)
                try assertError(response, .badRequest, param: c.param)
            }
        }
    }

    func testSeedTakesTheWholeInt64AndUInt64Range() async throws {
        let router = try makeRouter()
        try await app(router).test(.router) { client in
            for seed in ["18446744073709551615", "-9223372036854775808", "9223372036854775807", "-1", "0", "1e3"] {
                let response = try await post(client, "/v1/completions", #"{"prompt": "Hi", "max_tokens": 2, "seed": \#(seed)}"#)
                XCTAssertEqual(response.status, .ok, "seed \(seed): \(String(buffer: response.body))")
            }
        }
    }

    func testStopIsBounded() async throws {
        let router = try makeRouter()
        func stops(_ count: Int, bytes: Int) -> String {
            "[" + (0..<count).map { "\"\(String(repeating: "z", count: bytes - 1))\($0 % 10)\"" }.joined(separator: ",") + "]"
        }
        try await app(router).test(.router) { client in
            for (stop, ok) in [(stops(16, bytes: 1024), true), (stops(17, bytes: 4), false), (stops(1, bytes: 1025), false),
                               ("\"" + String(repeating: "é", count: 513) + "\"", false), ("[1]", false), ("[\"\", \"x\"]", true)] {
                let response = try await post(client, "/v1/completions", #"{"prompt": "Hi", "max_tokens": 2, "stop": \#(stop)}"#)
                if ok { XCTAssertEqual(response.status, .ok, String(buffer: response.body)) } else { try assertError(response, .badRequest, param: "stop") }
            }
        }
    }

    // MARK: Body

    func testDeepNestingInvalidUTF8AndWrongBodies() async throws {
        let router = try makeRouter()
        try await app(router).test(.router) { client in
            for depth in [65, 10_000] {
                let body = #"{"prompt": "x", "extra": "# + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}"
                let response = try await post(client, "/v1/completions", body)
                try assertError(response, .badRequest)
                XCTAssertEqual((try object(response)["error"] as? [String: Any])?["code"] as? String, "json_too_deep")
            }
            // 63 levels under the top object (64 in all) are fine; brackets in strings do not count.
            let nested = #"{"prompt": "[[[[{{{{\"", "extra": "# + String(repeating: "[", count: 63) + String(repeating: "]", count: 63) + #", "max_tokens": 2}"#
            let nestedResponse = try await post(client, "/v1/completions", nested)
            XCTAssertEqual(nestedResponse.status, .ok, String(buffer: nestedResponse.body))
            var invalid = ByteBuffer(string: #"{"prompt": ""#)
            invalid.writeBytes([0xFF, 0xC3, 0x28, 0xED, 0xA0, 0x80])
            invalid.writeString(#""}"#)
            try assertError(try await client.execute(uri: "/v1/completions", method: .post, headers: [.contentType: "application/json"], body: invalid),
                            .badRequest)
            for body in ["", "null", "[]", "\"x\"", "{", #"{"prompt": "x"} trailing"#] {
                try assertError(try await post(client, "/v1/completions", body), .badRequest)
            }
        }
    }

    // MARK: Echoes

    func testErrorMessagesBoundWhatTheyRepeat() async throws {
        let router = try makeRouter()
        let megabyte = String(repeating: "m", count: 1 << 20)
        let combining = "a" + String(repeating: "\u{0301}", count: 200_000)
        try await app(router).test(.router) { client in
            for (path, body, status) in [
                ("/v1/completions", #"{"prompt": "x", "model": "\#(megabyte)"}"#, HTTPResponse.Status.notFound),
                ("/v1/chat/completions", #"{"messages": [{"role": "\#(combining)", "content": "x"}]}"#, .badRequest),
            ] {
                let response = try await post(client, path, body)
                try assertError(response, status)
                let message = try XCTUnwrap((try object(response)["error"] as? [String: Any])?["message"] as? String)
                XCTAssertLessThan(message.utf8.count, 400, message)
                XCTAssertTrue(message.contains("..."), message)
            }
            let path = "/v1/models/" + String(repeating: "q", count: 4000)
            let response = try await client.execute(uri: path, method: .get)
            try assertError(response, .notFound)
            XCTAssertLessThan(String(buffer: response.body).utf8.count, 600)
        }
    }

    func testBoundedForLogCutsBytesOnAScalarBoundary() {
        XCTAssertEqual("short".boundedForLog(200), "short")
        XCTAssertEqual(String(repeating: "a", count: 201).boundedForLog(200), String(repeating: "a", count: 200) + "...")
        // "é" is 2 bytes: 5 bytes hold two of them, never half of the third.
        XCTAssertEqual("ééé".boundedForLog(5), "éé...")
        XCTAssertEqual("😀😀".boundedForLog(5), "😀...")
        let combining = "a" + String(repeating: "\u{0301}", count: 1 << 19)   // one Character, 1 MB
        let cut = combining.boundedForLog(200)
        XCTAssertEqual(cut.utf8.count, 199 + 3)
        XCTAssertEqual("abc".boundedForLog(0), "...")
    }

    func testDepthScanAndHugeNumbers() throws {
        XCTAssertFalse(JSONDepthScan.exceeds(Array(#"{"a": [[1]]}"#.utf8), limit: 3))
        XCTAssertTrue(JSONDepthScan.exceeds(Array(#"{"a": [[[1]]]}"#.utf8), limit: 3))
        XCTAssertFalse(JSONDepthScan.exceeds(Array(#"{"a": "[[[[\"[[[[\\"}"#.utf8), limit: 1))
        // Surplus closing brackets bank nothing: the depth never goes below 0.
        XCTAssertTrue(JSONDepthScan.exceeds(Array(#"[]]]]]]][[]"#.utf8), limit: 1))
        XCTAssertEqual(try JSONValue.parse(Data(#"{"a": 18446744073709551615}"#.utf8), maxDepth: 4)["a"], .uint(.max))
        XCTAssertEqual(try JSONValue.parse(Data(#"{"a": 1e400}"#.utf8), maxDepth: 4)["a"], .double(.infinity))
        XCTAssertEqual(try JSONValue.parse(Data(#"{"a": -0.0}"#.utf8), maxDepth: 4)["a"], .int(0))
        XCTAssertThrowsError(try JSONValue.parse(Data("[[[]]]".utf8), maxDepth: 2))
    }
}
