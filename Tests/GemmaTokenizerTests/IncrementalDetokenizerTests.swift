import XCTest
@testable import GemmaTokenizer

/// Streaming deltas are valid UTF-8 and add up to SentencePiece's decode.
final class IncrementalDetokenizerTests: XCTestCase {
    let tokenizer = TokenizerFixtures.tokenizer
    let expected = TokenizerFixtures.expected

    func testDeltasConcatenateToDecodeForEveryString() {
        for fixture in expected.encode {
            for ids in [fixture.ids, [tokenizer.bos] + fixture.ids + [tokenizer.eos]] {
                let deltas = streamDeltas(ids, tokenizer: tokenizer)
                XCTAssertEqual(deltas.joined(), tokenizer.decode(ids), fixture.name)
                XCTAssertEqual(deltas.joined(), fixture.decoded, fixture.name)
            }
        }
    }

    func testDeltasConcatenateToDecodeForHandMadeIds() {
        for fixture in expected.decode {
            let deltas = streamDeltas(fixture.ids, tokenizer: tokenizer)
            XCTAssertEqual(deltas.joined(), fixture.decoded, fixture.name)
        }
    }

    func testDeltasFollowNormalizerVariants() throws {
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: TokenizerFixtures.modelPath)))
        for variant in expected.decode_variants {
            let tokenizer = try GemmaTokenizer(serializedModel: original + variant.suffix, source: variant.name)
            for fixture in variant.cases {
                let deltas = streamDeltas(fixture.ids, tokenizer: tokenizer)
                XCTAssertEqual(deltas.joined(), fixture.decoded, "\(variant.name) \(fixture.name)")
            }
        }
    }

    func testEmojiSplitAcrossByteTokensWaitsUntilComplete() throws {
        let ids = tokenizer.encode("🦄", addBOS: false)
        XCTAssertEqual(ids.map { tokenizer.piece(for: $0) }, ["<0xF0>", "<0x9F>", "<0xA6>", "<0x84>"])
        var detokenizer = tokenizer.makeDetokenizer()
        for id in ids.dropLast() {
            XCTAssertEqual(detokenizer.feed(id), "")
            XCTAssertTrue(detokenizer.hasPendingBytes)
        }
        XCTAssertEqual(detokenizer.feed(ids.last!), "🦄")
        XCTAssertFalse(detokenizer.hasPendingBytes)
        XCTAssertEqual(detokenizer.finish(), "")
    }

    func testTextAfterAnEmojiIsEmittedWithIt() {
        let ids = tokenizer.encode("a🦄 the", addBOS: false)
        let deltas = streamDeltas(ids, tokenizer: tokenizer)
        XCTAssertEqual(deltas.joined(), "a🦄 the")
        XCTAssertEqual(deltas.filter { !$0.isEmpty }, ["a", "🦄", " the"])
    }

    func testTruncatedCharacterBecomesReplacementCharactersAtFinish() {
        let bytes = [0xF0, 0x9F, 0xA6].map { tokenizer.id(forPiece: String(format: "<0x%02X>", $0))! }
        var detokenizer = tokenizer.makeDetokenizer()
        XCTAssertEqual(detokenizer.feed(bytes), "")
        XCTAssertEqual(detokenizer.finish(), "\u{FFFD}\u{FFFD}\u{FFFD}")
        XCTAssertEqual(tokenizer.decode(bytes), "\u{FFFD}\u{FFFD}\u{FFFD}")
    }

    func testInvalidByteIsReplacedAsSoonAsItIsCertain() {
        let continuation = tokenizer.id(forPiece: "<0x80>")!
        var detokenizer = tokenizer.makeDetokenizer()
        XCTAssertEqual(detokenizer.feed(continuation), "\u{FFFD}")
        XCTAssertFalse(detokenizer.hasPendingBytes)
    }

    func testIdsOutsideTheVocabularyAreIgnored() {
        var detokenizer = tokenizer.makeDetokenizer()
        XCTAssertEqual(detokenizer.feed(-5), "")
        XCTAssertEqual(detokenizer.feed(Int32(tokenizer.vocabularySize)), "")
        XCTAssertEqual(detokenizer.feed(tokenizer.encode("ok", addBOS: false)), "ok")
    }

    func testSurfaceTableMatchesSingleTokenDecode() {
        // With this model no leading space is dropped, so each id alone decodes to its surface
        // (byte pieces excepted: alone they are a byte run of one).
        let table = tokenizer.surfaces
        XCTAssertFalse(table.dropsLeadingSpace)
        for id in 0 ..< Int32(tokenizer.vocabularySize) where table.kind(of: id) != .byte {
            XCTAssertEqual(String(decoding: Array(table.surface(of: id)), as: UTF8.self),
                           tokenizer.decode([id]), "id \(id)")
        }
    }
}
