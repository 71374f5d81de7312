import Foundation
import GemmaTestSupport
import XCTest

/// The built `gemma-quantize` binary: `serve` and a `--remote` conversion of the bundled model
/// give the local conversion's bytes; refusals reach the user; SIGTERM exits 0.
final class QuantizeProcessTests: XCTestCase {
    func testServeAndRemoteConvertGiveTheLocalConversion() async throws {
        let executable = try BuiltProducts.executable("gemma-quantize")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gemma-quantize-process-\(UUID().uuidString)")
        let models = directory.appendingPathComponent("models")
        try QuantizerFixtures.copyModel(QuantizerFixtures.bundledModel, to: models.appendingPathComponent("tiny-shakespeare"))
        try FileManager.default.createDirectory(at: models.appendingPathComponent("out"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        let url = QuantizerFixtures.ipcURL("process")
        let server = Process()
        server.executableURL = executable
        server.arguments = ["serve", "--listen", url, "--models-dir", models.path, "--threads", "2"]
        let errors = Pipe()
        server.standardError = errors
        server.standardOutput = FileHandle.nullDevice
        let log = OutputCollector(errors)
        try server.run()
        addTeardownBlock {
            if server.isRunning {
                kill(server.processIdentifier, SIGKILL)
                server.waitUntilExit()
            }
        }
        let giveUp = ContinuousClock.now + .seconds(30)
        while !log.text.contains("] listening") {
            guard server.isRunning, ContinuousClock.now < giveUp else { throw TimedOut(what: "the service to listen:\n\(log.text)") }
            try await Task.sleep(for: .milliseconds(10))
        }

        let remote = try Self.run(executable, ["tiny-shakespeare", "-o", "out/tiny-q8_0.gguf", "--type", "q8_0",
                                               "--remote", url, "--job-id", "first"])
        XCTAssertEqual(remote.status, 0, remote.stderr)
        XCTAssertTrue(remote.stdout.contains("wrote out/tiny-q8_0.gguf"), remote.stdout)
        XCTAssertTrue(remote.stderr.contains("job first"), remote.stderr)

        let localOutput = directory.appendingPathComponent("local-q8_0.gguf").path
        let local = try Self.run(executable, [models.appendingPathComponent("tiny-shakespeare").path, "-o", localOutput, "--type", "q8_0"])
        XCTAssertEqual(local.status, 0, local.stderr)
        XCTAssertEqual(try Data(contentsOf: models.appendingPathComponent("out/tiny-q8_0.gguf")),
                       try Data(contentsOf: URL(fileURLWithPath: localOutput)), "the service's file differs from the local one")

        // Following the same job again: it ran once and is reported as done.
        let again = try Self.run(executable, ["tiny-shakespeare", "-o", "out/tiny-q8_0.gguf", "--type", "q8_0",
                                              "--remote", url, "--job-id", "first"])
        XCTAssertEqual(again.status, 0, again.stderr)
        // Refusals name the path, and the command fails.
        let exists = try Self.run(executable, ["tiny-shakespeare", "-o", "out/tiny-q8_0.gguf", "--type", "q8_0", "--remote", url])
        XCTAssertNotEqual(exists.status, 0)
        XCTAssertTrue(exists.stderr.contains("ALREADY_EXISTS") && exists.stderr.contains("out/tiny-q8_0.gguf"), exists.stderr)
        let outside = try Self.run(executable, ["../models/tiny-shakespeare", "-o", "x.gguf", "--type", "q4_0", "--remote", url])
        XCTAssertNotEqual(outside.status, 0)
        XCTAssertTrue(outside.stderr.contains("INVALID_ARGUMENT") && outside.stderr.contains("../models/tiny-shakespeare"), outside.stderr)

        kill(server.processIdentifier, SIGTERM)
        while server.isRunning {
            guard ContinuousClock.now < giveUp + .seconds(60) else { throw TimedOut(what: "the service to exit:\n\(log.text)") }
            try await Task.sleep(for: .milliseconds(10))
        }
        XCTAssertEqual(server.terminationStatus, 0, log.text)
        let journal = try String(contentsOf: models.appendingPathComponent(".gemma-quantize-jobs.json"), encoding: .utf8)
        XCTAssertTrue(journal.contains("\"job_id\" : \"first\"") && journal.contains("SUCCEEDED"), journal)
    }

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    static func run(_ executable: URL, _ arguments: [String]) throws -> Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
    }
}
