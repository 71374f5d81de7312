import Foundation
import XCTest

/// The `gemma` command's documented forms, run as a process and checked against
/// transformers' and Python sentencepiece's outputs.
final class GemmaCLITests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// The `gemma` binary next to the test bundle (both live in the build's products folder).
    static var executable: URL {
        var url = Bundle.main.bundleURL
        for candidate in [url, url.deletingLastPathComponent()] {
            let binary = candidate.appendingPathComponent("gemma")
            if FileManager.default.isExecutableFile(atPath: binary.path) { return binary }
        }
        url = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return url.appendingPathComponent("gemma")
    }

    struct Result {
        let status: Int32
        let stdout: Data
        let stderr: String
    }

    func run(_ arguments: [String]) throws -> Result {
        let process = Process()
        process.executableURL = Self.executable
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: stdout, stderr: String(decoding: stderr, as: UTF8.self))
    }

    func json(_ result: Result) throws -> [String: Any] {
        XCTAssertEqual(result.status, 0, result.stderr)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: result.stdout) as? [String: Any])
    }

    func model(_ name: String) -> String { Self.fixtures.appendingPathComponent("models/\(name)").path }

    func reference(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: model(name) + "/reference.json"))) as! [String: Any]
    }

    func testGenerateJSONMatchesTransformersGreedy() throws {
        for name in ["tiny-mqa", "tiny-mha"] {
            let prompt = (try reference(name)["prompts"] as! [[String: Any]])[2]
            let tokens = (prompt["tokens"] as! [Int]).map(String.init).joined(separator: ",")
            let output = try json(run(["generate", "--model", model(name), "--tokens", tokens,
                                       "--max-tokens", "24", "--ignore-eos", "--json"]))
            XCTAssertEqual(output["tokens"] as? [Int], prompt["greedy_continuation"] as? [Int], name)
        }
    }

    func testLogitsJSONMatchesTransformers() throws {
        let reference = try reference("tiny-gqa")
        let prompt = (reference["prompts"] as! [[String: Any]])[1]
        let tokens = prompt["tokens"] as! [Int]
        let output = try json(run(["logits", "--model", model("tiny-gqa"), "--tokens",
                                   tokens.map(String.init).joined(separator: ","), "--json"]))
        let logits = try XCTUnwrap(output["logits"] as? [Double])
        let raw = try Data(contentsOf: URL(fileURLWithPath: model("tiny-gqa") + "/reference-logits.f32"))
        let vocab = reference["vocab_size"] as! Int
        let offset = (prompt["logits_offset"] as! Int) + (tokens.count - 1) * vocab
        XCTAssertEqual(logits.count, vocab)
        raw.withUnsafeBytes { bytes in
            for i in 0..<vocab {
                let expected = Float(bitPattern: bytes.loadUnaligned(fromByteOffset: (offset + i) * 4, as: UInt32.self))
                XCTAssertEqual(Float(logits[i]), expected, accuracy: 1e-3, "logit \(i)")
            }
        }
    }

    func testTokenizeMatchesPythonSentencepiece() throws {
        let expected = try JSONSerialization.jsonObject(
            with: Data(contentsOf: Self.fixtures.appendingPathComponent("tokenizer/expected.json"))) as! [String: Any]
        let cases = (expected["encode"] as! [[String: Any]]).prefix(16)
        for item in cases {
            let text = item["text"] as! String
            guard !text.isEmpty else { continue }
            let output = try json(run(["tokenize", "--model", model("tiny-mha"), "--text", text, "--json"]))
            XCTAssertEqual(output["ids"] as? [Int], item["ids"] as? [Int], text)
        }
        let withBOS = try json(run(["tokenize", "--model", model("tiny-mha"), "--text", "a", "--bos", "--json"]))
        XCTAssertEqual((withBOS["ids"] as? [Int])?.first, 2)
    }

    func testGenerateStreamsText() throws {
        let result = try run(["generate", "--model", model("tiny-mqa"), "--prompt", "The licence", "--max-tokens", "8",
                              "--temperature", "0.8", "--seed", "3"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertFalse(result.stdout.isEmpty)
        let again = try run(["generate", "--model", model("tiny-mqa"), "--prompt", "The licence", "--max-tokens", "8",
                             "--temperature", "0.8", "--seed", "3"])
        XCTAssertEqual(result.stdout, again.stdout, "same seed, same text")
    }

    func testErrorsNameTheProblem() throws {
        let missing = try run(["generate", "--model", "/nonexistent/model", "--prompt", "x"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("/nonexistent/model"), missing.stderr)
        let badToken = try run(["logits", "--model", model("tiny-mha"), "--tokens", "2,99999", "--json"])
        XCTAssertNotEqual(badToken.status, 0)
        XCTAssertTrue(badToken.stderr.contains("99999"), badToken.stderr)
        let badList = try run(["logits", "--model", model("tiny-mha"), "--tokens", "2,x", "--json"])
        XCTAssertNotEqual(badList.status, 0)
        XCTAssertTrue(badList.stderr.contains("'x'"), badList.stderr)
        let badTemperature = try run(["generate", "--model", model("tiny-mha"), "--prompt", "x", "--temperature", "-1"])
        XCTAssertNotEqual(badTemperature.status, 0)
        XCTAssertTrue(badTemperature.stderr.contains("temperature"), badTemperature.stderr)
    }
}
