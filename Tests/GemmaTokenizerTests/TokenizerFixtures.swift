import Foundation
import XCTest
@testable import GemmaTokenizer

/// The committed test tokenizer and Python sentencepiece's answers for it
/// (Tests/Fixtures/tokenizer, written by scripts/make_tokenizer_fixtures.py).
enum TokenizerFixtures {
    /// Tests/Fixtures/tokenizer, found from this file's location.
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // GemmaTokenizerTests
        .deletingLastPathComponent()  // Tests
        .appendingPathComponent("Fixtures/tokenizer")

    /// Path of the test tokenizer model.
    static let modelPath = directory.appendingPathComponent("test-tokenizer.model").path

    /// The test tokenizer, loaded once.
    static let tokenizer: GemmaTokenizer = {
        do {
            return try GemmaTokenizer(contentsOf: modelPath)
        } catch {
            fatalError("cannot load the test tokenizer: \(error)")
        }
    }()

    /// Python's answers, loaded once.
    static let expected: Expected = {
        do {
            let data = try Data(contentsOf: directory.appendingPathComponent("expected.json"))
            return try JSONDecoder().decode(Expected.self, from: data)
        } catch {
            fatalError("cannot read expected.json (run scripts/make_tokenizer_fixtures.py): \(error)")
        }
    }()

    /// The layout of expected.json.
    struct Expected: Decodable {
        struct Special: Decodable {
            let bos, eos, pad, unk: Int32
            let start_of_turn, end_of_turn: Int32
        }
        struct EncodeCase: Decodable {
            let name, text: String
            let ids: [Int32]
            let pieces: [String]
            let decoded: String
        }
        struct DecodeCase: Decodable {
            let name: String
            let ids: [Int32]
            let decoded: String
        }
        struct Variant: Decodable {
            let name: String
            let suffix: [UInt8]
            let cases: [DecodeCase]
        }
        let vocab_size: Int
        let special: Special
        let encode: [EncodeCase]
        let decode: [DecodeCase]
        let decode_variants: [Variant]
    }
}

/// Streams `ids` through a fresh detokenizer, checking that every delta is well-formed
/// UTF-8, and returns the deltas (the last one is `finish()`'s).
func streamDeltas(_ ids: [Int32], tokenizer: GemmaTokenizer,
                  file: StaticString = #filePath, line: UInt = #line) -> [String] {
    var detokenizer = tokenizer.makeDetokenizer()
    var deltas: [String] = []
    for id in ids {
        deltas.append(checkedString(detokenizer.feedBytes(id), file: file, line: line))
    }
    deltas.append(checkedString(detokenizer.finishBytes(), file: file, line: line))
    XCTAssertFalse(detokenizer.hasPendingBytes, file: file, line: line)
    return deltas
}

/// The bytes as a String, failing the test if they are not well-formed UTF-8.
func checkedString(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> String {
    guard let text = String(validating: bytes, as: UTF8.self) else {
        XCTFail("delta is not valid UTF-8: \(bytes)", file: file, line: line)
        return String(decoding: bytes, as: UTF8.self)
    }
    return text
}
