import Foundation
import XCTest
@testable import GemmaTokenizer

/// Loading from files, directories and bytes, and the errors for bad models.
final class ModelLoadingTests: XCTestCase {
    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory
            .appendingPathComponent("GemmaTokenizerTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    private func modelBytes() throws -> [UInt8] {
        try [UInt8](Data(contentsOf: URL(fileURLWithPath: TokenizerFixtures.modelPath)))
    }

    func testMissingFileIsNamed() {
        let path = scratch.appendingPathComponent("nope.model").path
        XCTAssertThrowsError(try GemmaTokenizer(contentsOf: path)) { error in
            XCTAssertEqual(error as? TokenizerError, .fileNotFound(path: path))
            XCTAssertTrue("\(error)".contains(path))
        }
    }

    func testDirectoryWithoutTokenizerModelNamesTheExpectedFile() {
        XCTAssertThrowsError(try GemmaTokenizer(contentsOf: scratch.path)) { error in
            XCTAssertEqual(error as? TokenizerError,
                           .fileNotFound(path: scratch.appendingPathComponent("tokenizer.model").path))
        }
    }

    func testGarbageFilesAreRejectedNamingTheFile() throws {
        let bytes = try modelBytes()
        let garbage: [(String, [UInt8])] = [
            ("text.model", Array("this is not a sentencepiece model\n".utf8)),
            ("random.model", (0 ..< 4096).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }),
            ("empty.model", []),
            ("truncated.model", Array(bytes.prefix(bytes.count / 2))),
        ]
        for (name, content) in garbage {
            let path = scratch.appendingPathComponent(name).path
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(content)), name)
            XCTAssertThrowsError(try GemmaTokenizer(contentsOf: path), name) { error in
                guard case .invalidModel(let source, let reason)? = error as? TokenizerError else {
                    return XCTFail("\(name): unexpected error \(error)")
                }
                XCTAssertEqual(source, path, name)
                XCTAssertFalse(reason.isEmpty, name)
                XCTAssertTrue("\(error)".contains(path), name)
            }
        }
    }

    func testGarbageBytesAreRejectedNamingTheSource() {
        XCTAssertThrowsError(try GemmaTokenizer(serializedModel: Array("garbage".utf8), source: "gguf metadata")) { error in
            guard case .invalidModel(let source, _)? = error as? TokenizerError else {
                return XCTFail("unexpected error \(error)")
            }
            XCTAssertTrue(source.contains("gguf metadata"))
        }
    }

    func testLoadsFromADirectory() throws {
        try FileManager.default.copyItem(atPath: TokenizerFixtures.modelPath,
                                         toPath: scratch.appendingPathComponent("tokenizer.model").path)
        let tokenizer = try GemmaTokenizer(contentsOf: scratch.path)
        XCTAssertEqual(tokenizer.encode("café 12", addBOS: true),
                       TokenizerFixtures.tokenizer.encode("café 12", addBOS: true))
    }

    func testLoadsFromSerializedBytes() throws {
        let tokenizer = try GemmaTokenizer(serializedModel: modelBytes())
        let reference = TokenizerFixtures.tokenizer
        XCTAssertEqual(tokenizer.vocabularySize, reference.vocabularySize)
        XCTAssertEqual(tokenizer.stopTokens, reference.stopTokens)
        for fixture in TokenizerFixtures.expected.encode {
            XCTAssertEqual(tokenizer.encode(fixture.text, addBOS: false), fixture.ids, fixture.name)
        }
    }

    func testSharedAcrossThreads() {
        let tokenizer = TokenizerFixtures.tokenizer
        let fixtures = TokenizerFixtures.expected.encode
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for fixture in fixtures {
                XCTAssertEqual(tokenizer.encode(fixture.text, addBOS: false), fixture.ids)
                XCTAssertEqual(tokenizer.decode(fixture.ids), fixture.decoded)
            }
        }
    }
}
