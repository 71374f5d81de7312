import Foundation
import GemmaTokenizerService
import GemmaWire
import GemmaTestSupport
import XCTest

/// A C client built with protobuf-c from Proto/gemma/v1 talks to the Tokenizer service.
final class CClientTests: XCTestCase {
    private func run(_ executable: URL, _ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
    }

    /// Generates the C code and compiles the client into a temporary folder.
    private func buildClient() throws -> URL {
        guard let protocC = BuiltProducts.onPath("protoc-c") else {
            throw XCTSkip("protoc-c not found (apt-get install protobuf-c-compiler libprotobuf-c-dev, or scripts/setup.sh)")
        }
        guard let cc = BuiltProducts.onPath("cc") ?? BuiltProducts.onPath("gcc") ?? BuiltProducts.onPath("clang") else {
            throw XCTSkip("no C compiler (cc, gcc or clang) on PATH")
        }
        let root = WireFixtures.packageRoot
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gemma-c-client-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }

        let generate = try run(protocC, ["-I", root.appendingPathComponent("Proto").path, "--c_out=\(folder.path)",
                                         root.appendingPathComponent("Proto/gemma/v1/envelope.proto").path,
                                         root.appendingPathComponent("Proto/gemma/v1/tokenizer.proto").path])
        XCTAssertEqual(generate.status, 0, "protoc-c: \(generate.errors)")
        let client = folder.appendingPathComponent("tokenizer_client")
        let compile = try run(cc, ["-std=c99", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Werror", "-O1", "-I", folder.path,
                                   root.appendingPathComponent("Tests/CClient/tokenizer_client.c").path,
                                   folder.appendingPathComponent("gemma/v1/envelope.pb-c.c").path,
                                   folder.appendingPathComponent("gemma/v1/tokenizer.pb-c.c").path,
                                   "-lprotobuf-c", "-lnng", "-o", client.path])
        XCTAssertEqual(compile.status, 0, "cc: \(compile.errors)")
        guard compile.status == 0 else { throw TimedOut(what: "a compiled C client") }
        return client
    }

    func testCClientEncodesThroughTheService() async throws {
        let client = try buildClient()
        let service = try TokenizerService(contentsOf: WireFixtures.tokenizerModelPath)
        let running = try RunningServer(url: WireFixtures.ipcURL("cclient")) { service.register(on: $0) }
        addTeardownBlock { await running.stop() }

        let texts = ["Hello, world!", "🦄 café", "<start_of_turn>user\nhi"]
        for bos in [false, true] {
            let result = try await Task.detached {
                try self.run(client, [running.url] + (bos ? ["--bos"] : []) + texts)
            }.value
            XCTAssertEqual(result.status, 0, result.errors)
            let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            let ids = lines.map { $0.split(separator: " ").compactMap { Int32($0) } }
            XCTAssertEqual(ids, texts.map { WireFixtures.tokenizer.encode($0, addBOS: bos) })
        }
    }
}
