import XCTest
@testable import GemmaTokenizer

/// Encoding and decoding agree with Python sentencepiece on awkward strings.
final class EncodeDecodeTests: XCTestCase {
    let tokenizer = TokenizerFixtures.tokenizer
    let expected = TokenizerFixtures.expected

    func testFixtureCoversTheAwkwardCases() {
        XCTAssertGreaterThanOrEqual(expected.encode.count, 40)
        let byteFallback = expected.encode.filter { $0.pieces.contains { $0.hasPrefix("<0x") } }
        XCTAssertGreaterThanOrEqual(byteFallback.count, 10, "fixtures should exercise byte fallback")
    }

    func testIdsMatchPython() {
        for fixture in expected.encode {
            XCTAssertEqual(tokenizer.encode(fixture.text, addBOS: false), fixture.ids, fixture.name)
        }
    }

    func testAddBOSPrependsBOSOnly() {
        for fixture in expected.encode {
            XCTAssertEqual(tokenizer.encode(fixture.text, addBOS: true), [tokenizer.bos] + fixture.ids, fixture.name)
        }
    }

    func testPiecesMatchPython() {
        for fixture in expected.encode {
            XCTAssertEqual(fixture.ids.map { tokenizer.piece(for: $0) }, fixture.pieces, fixture.name)
        }
    }

    func testDecodeOfEncodeIsIdentity() {
        for fixture in expected.encode {
            XCTAssertEqual(tokenizer.decode(tokenizer.encode(fixture.text, addBOS: true)), fixture.text, fixture.name)
        }
    }

    func testDecodeMatchesPython() {
        for fixture in expected.encode {
            XCTAssertEqual(tokenizer.decode(fixture.ids), fixture.decoded, fixture.name)
        }
        for fixture in expected.decode {
            XCTAssertEqual(tokenizer.decode(fixture.ids), fixture.decoded, fixture.name)
        }
    }

    func testDecodeMatchesPythonUnderNormalizerVariants() throws {
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: TokenizerFixtures.modelPath)))
        for variant in expected.decode_variants {
            let tokenizer = try GemmaTokenizer(serializedModel: original + variant.suffix, source: variant.name)
            XCTAssertTrue(tokenizer.surfaces.dropsLeadingSpace, variant.name)
            for fixture in variant.cases {
                XCTAssertEqual(tokenizer.decode(fixture.ids), fixture.decoded, "\(variant.name) \(fixture.name)")
            }
        }
    }

    func testDecodeSkipsIdsOutsideTheVocabulary() {
        let hi = tokenizer.encode("hi", addBOS: false)
        XCTAssertEqual(tokenizer.decode([-1] + hi + [Int32(tokenizer.vocabularySize), Int32.max]), "hi")
    }

    func testEmptyInputs() {
        XCTAssertEqual(tokenizer.encode("", addBOS: false), [])
        XCTAssertEqual(tokenizer.encode("", addBOS: true), [tokenizer.bos])
        XCTAssertEqual(tokenizer.decode([]), "")
    }
}
