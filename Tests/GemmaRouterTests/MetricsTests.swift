import Foundation
@testable import GemmaRouter
import GemmaWire
import Hummingbird
import HummingbirdTesting
import XCTest

/// GET /metrics after served requests: the counts match what was served, and the text parses
/// with the official Prometheus Python client (`prometheus_client`, when installed).
final class MetricsTests: RouterTestCase {
    /// The samples of an exposition, "name{labels}" -> value.
    func samples(_ text: String) -> [String: Double] {
        var result: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                XCTFail("not a sample line: \(line)")
                continue
            }
            result[String(line[..<space])] = value
        }
        return result
    }

    func testMetricsCountServedRequestsAndParseWithPrometheusClient() async throws {
        let router = try makeRouter()
        try await app(router).test(.router) { client in
            let prompt = try referencePrompts()[1]
            let whole = try object(try await post(client, "/v1/completions",
                                                   #"{"prompt": \#(prompt), "max_tokens": 5, "temperature": 0, "ignore_eos": true}"#))
            XCTAssertEqual((whole["usage"] as? [String: Int])?["completion_tokens"], 5)
            let streamed = try await post(client, "/v1/chat/completions",
                                          #"{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": true, "ignore_eos": true}"#)
            XCTAssertEqual(streamed.status, .ok)
            let chatPrompt = try await router.tokenizer.call(TokenizerRPC.applyChatTemplate, {
                var request = Gemma_V1_ApplyChatTemplateRequest()
                var message = Gemma_V1_ChatMessage()
                message.role = "user"
                message.content = "Hi"
                request.messages = [message]
                request.addGenerationPrompt = true
                return request
            }(), timeout: .seconds(5)).ids.count

            let response = try await client.execute(uri: "/metrics", method: .get)
            XCTAssertEqual(response.status, .ok)
            XCTAssertEqual(response.headers[.contentType], "text/plain; version=0.0.4; charset=utf-8")
            let text = String(buffer: response.body)
            let values = samples(text)
            let model = #"model_name="tiny""#
            XCTAssertEqual(values["gemma:prompt_tokens_total{\(model)}"], Double(prompt.count + chatPrompt))
            XCTAssertEqual(values["gemma:generation_tokens_total{\(model)}"], 8)
            XCTAssertEqual(values["gemma:request_success_total{\(model),finished_reason=\"length\"}"], 2)
            XCTAssertEqual(values["gemma:time_to_first_token_seconds_count{\(model)}"], 2)
            XCTAssertEqual(values["gemma:inter_token_latency_seconds_count{\(model)}"], 4 + 2)
            XCTAssertEqual(values["gemma:e2e_request_latency_seconds_count{\(model)}"], 2)
            XCTAssertEqual(values["gemma:e2e_request_latency_seconds_bucket{\(model),le=\"+Inf\"}"], 2)
            XCTAssertEqual(values["gemma:num_requests_running{\(model)}"], 0)
            XCTAssertEqual(values["gemma:num_requests_waiting{\(model)}"], 0)
            XCTAssertEqual(values["gemma:stage_up{\(model),stage=\"0\",replica=\"0\"}"], 1)
            XCTAssertEqual(values["gemma:stage_up{\(model),stage=\"1\",replica=\"0\"}"], 1)
            XCTAssertEqual(values["gemma:kv_cache_usage_perc{\(model),stage=\"1\",replica=\"0\"}"], 0)
            XCTAssertEqual(values["gemma:request_failure_total{\(model)}"], 0)

            // A stage that stops answering shows as down.
            await stage1.stop()
            let down = samples(String(buffer: try await client.execute(uri: "/metrics", method: .get).body))
            XCTAssertEqual(down["gemma:stage_up{\(model),stage=\"1\",replica=\"0\"}"], 0)

            try checkWithPrometheusClient(text)
        }
    }

    /// Parses the exposition with prometheus_client's own parser, which rejects malformed text.
    func checkWithPrometheusClient(_ text: String) throws {
        let python = OpenAIClientTests.python
        guard (try? OpenAIClientTests.run([python, "-c", "import prometheus_client"]).0) == 0 else {
            throw XCTSkip("the prometheus_client Python package is not installed (\(python) -c 'import prometheus_client' failed)")
        }
        let script = """
            import os, sys
            from prometheus_client.parser import text_string_to_metric_families
            families = {f.name: f.type for f in text_string_to_metric_families(os.environ["METRICS"])}
            print(sorted(families.items()))
            """
        let (status, output) = try OpenAIClientTests.run([python, "-c", script], environment: ["METRICS": text])
        XCTAssertEqual(status, 0, output)
        for family in ["('gemma:time_to_first_token_seconds', 'histogram')", "('gemma:generation_tokens', 'counter')",
                       "('gemma:num_requests_running', 'gauge')", "('gemma:kv_cache_usage_perc', 'gauge')"] {
            XCTAssertTrue(output.contains(family), "\(family) missing from \(output)")
        }
    }
}
