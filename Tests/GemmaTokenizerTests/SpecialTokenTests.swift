import XCTest
@testable import GemmaTokenizer

/// Special ids come from the model, not from constants.
final class SpecialTokenTests: XCTestCase {
    let tokenizer = TokenizerFixtures.tokenizer
    let special = TokenizerFixtures.expected.special

    func testTrainerSpecIds() {
        XCTAssertEqual(tokenizer.bos, 2)
        XCTAssertEqual(tokenizer.eos, 1)
        XCTAssertEqual(tokenizer.pad, 0)
        XCTAssertEqual(tokenizer.unknown, 3)
        XCTAssertEqual([tokenizer.bos, tokenizer.eos, tokenizer.pad, tokenizer.unknown],
                       [special.bos, special.eos, special.pad, special.unk])
    }

    func testTurnMarkersAreLookedUpByPiece() {
        XCTAssertEqual(tokenizer.startOfTurn, 4)
        XCTAssertEqual(tokenizer.endOfTurn, 5)
        XCTAssertEqual(tokenizer.startOfTurn, special.start_of_turn)
        XCTAssertEqual(tokenizer.endOfTurn, special.end_of_turn)
        XCTAssertEqual(tokenizer.encode("<start_of_turn><end_of_turn>", addBOS: false), [4, 5])
    }

    func testStopTokens() {
        XCTAssertEqual(tokenizer.stopTokens, [1, 5])
        XCTAssertTrue(tokenizer.isStopToken(tokenizer.eos))
        XCTAssertTrue(tokenizer.isStopToken(5))
        XCTAssertFalse(tokenizer.isStopToken(tokenizer.bos))
        XCTAssertFalse(tokenizer.isStopToken(4))
    }

    func testVocabulary() {
        XCTAssertEqual(tokenizer.vocabularySize, TokenizerFixtures.expected.vocab_size)
        XCTAssertEqual(tokenizer.piece(for: 2), "<s>")
        XCTAssertEqual(tokenizer.piece(for: 6), "<0x00>")
        XCTAssertNil(tokenizer.piece(for: -1))
        XCTAssertNil(tokenizer.piece(for: Int32(tokenizer.vocabularySize)))
        XCTAssertEqual(tokenizer.id(forPiece: "<end_of_turn>"), 5)
        XCTAssertNil(tokenizer.id(forPiece: "<no such piece>"))
        XCTAssertEqual(tokenizer.id(forPiece: "<unk>"), 3)
    }

    func testPieceTypes() {
        let model = tokenizer.model
        XCTAssertTrue(model.isControl(tokenizer.bos))
        XCTAssertTrue(model.isControl(tokenizer.eos))
        XCTAssertTrue(model.isControl(0))
        XCTAssertTrue(model.isUnknown(3))
        XCTAssertTrue(model.isByte(tokenizer.id(forPiece: "<0xFF>")!))
        XCTAssertFalse(model.isControl(4), "user-defined pieces are not control pieces")
        XCTAssertFalse(model.isByte(4))
        XCTAssertFalse(model.isUnused(4))
        XCTAssertFalse(model.isControl(-1))
        XCTAssertEqual(model.score(of: -1), 0)
    }

    func testControlTokensDecodeToNothingAndUserDefinedToTheirSpelling() {
        XCTAssertEqual(tokenizer.decode([tokenizer.bos, tokenizer.eos, tokenizer.pad!]), "")
        XCTAssertEqual(tokenizer.decode([4, 5]), "<start_of_turn><end_of_turn>")
        XCTAssertEqual(tokenizer.decode([tokenizer.unknown]), " \u{2047} ")
    }
}
