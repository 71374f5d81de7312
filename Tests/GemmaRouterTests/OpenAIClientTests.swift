import Foundation
import GemmaRouter
import Hummingbird
import HummingbirdTesting
import XCTest

/// The official `openai` Python client against a live router: a plain and a streamed chat
/// completion. Skipped when `python3 -c "import openai"` fails (set GEMMA_TEST_PYTHON to use
/// another interpreter).
final class OpenAIClientTests: RouterTestCase {
    static var python: String { ProcessInfo.processInfo.environment["GEMMA_TEST_PYTHON"] ?? "python3" }

    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    func testOfficialOpenAIPythonClient() async throws {
        guard (try? Self.run([Self.python, "-c", "import openai"]).0) == 0 else {
            throw XCTSkip("the openai Python package is not installed (\(Self.python) -c 'import openai' failed)")
        }
        let router = try makeRouter(apiKey: "test-key")
        let app = Application(router: router.buildRouter(),
                              configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: Self.quiet("app"))
        let script = """
            import json, os, openai
            client = openai.OpenAI(base_url=os.environ["ROUTER"] + "/v1", api_key="test-key", max_retries=0)
            messages = [{"role": "user", "content": "Who art thou?"}]
            models = [m.id for m in client.models.list()]
            whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12, temperature=0,
                                                   extra_body={"ignore_eos": True})
            parts, roles, finish = [], [], None
            stream = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12, temperature=0,
                                                    stream=True, stream_options={"include_usage": True},
                                                    extra_body={"ignore_eos": True})
            usage = None
            for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.delta.role: roles.append(choice.delta.role)
                    if choice.delta.content: parts.append(choice.delta.content)
                    if choice.finish_reason: finish = choice.finish_reason
            try:
                openai.OpenAI(base_url=os.environ["ROUTER"] + "/v1", api_key="wrong", max_retries=0).models.list()
                status = 200
            except openai.AuthenticationError as e:
                status = e.status_code
            print(json.dumps({"models": models, "text": whole.choices[0].message.content,
                              "role": whole.choices[0].message.role, "finish": whole.choices[0].finish_reason,
                              "usage": whole.usage.completion_tokens, "streamed": "".join(parts), "roles": roles,
                              "stream_finish": finish, "stream_usage": usage, "bad_key_status": status}))
            """
        try await app.test(.live) { client in
            let port = try XCTUnwrap(client.port)
            let (status, output) = try await Task.detached {
                try Self.run([Self.python, "-c", script], environment: ["ROUTER": "http://127.0.0.1:\(port)"])
            }.value
            XCTAssertEqual(status, 0, output)
            let line = try XCTUnwrap(output.split(separator: "\n").last.map(String.init), output)
            let result = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], output)
            XCTAssertEqual(result["models"] as? [String], ["tiny"])
            XCTAssertEqual(result["role"] as? String, "assistant")
            XCTAssertEqual(result["finish"] as? String, "length")
            XCTAssertEqual(result["usage"] as? Int, 12)
            XCTAssertFalse((result["text"] as? String ?? "").isEmpty)
            XCTAssertEqual(result["streamed"] as? String, result["text"] as? String)
            XCTAssertEqual(result["roles"] as? [String], ["assistant"])
            XCTAssertEqual(result["stream_finish"] as? String, "length")
            XCTAssertEqual(result["stream_usage"] as? Int, 12)
            XCTAssertEqual(result["bad_key_status"] as? Int, 401)
        }
    }
}
