import Foundation
import GemmaTokenizer
import XCTest

/// Reading a tokenizer.model's pieces and types, and rebuilding a working model from them
/// (what a GGUF file without tokenizer.model needs).
final class ModelProtoTests: XCTestCase {
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer/test-tokenizer.model").path

    func testReadsPiecesTypesAndSpecs() throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let proto = try SentencePieceModelProto(serialized: bytes, source: path)
        let model = try SentencePieceModel(contentsOf: path)
        XCTAssertEqual(proto.pieces.count, model.vocabularySize)
        for (id, piece) in proto.pieces.enumerated() {
            XCTAssertEqual(piece.piece, model.piece(for: Int32(id)))
            XCTAssertEqual(piece.score, model.score(of: Int32(id)))
            XCTAssertEqual(piece.type == .byte, model.isByte(Int32(id)), "id \(id)")
            XCTAssertEqual(piece.type == .control, model.isControl(Int32(id)), "id \(id)")
        }
        XCTAssertEqual(proto.pieces[4].type, .userDefined)   // <start_of_turn>
        XCTAssertEqual(proto.pieces[3].type, .unknown)
        XCTAssertEqual(proto.modelType, 2)
        XCTAssertTrue(proto.byteFallback && proto.splitDigits)
        XCTAssertEqual([proto.padID, proto.eosID, proto.bosID, proto.unknownID], [0, 1, 2, 3])
        XCTAssertEqual(proto.normalizerName, "identity")
        XCTAssertFalse(proto.addDummyPrefix)
        XCTAssertFalse(proto.removeExtraWhitespaces)
    }

    func testRebuiltModelEncodesLikeTheOriginal() throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let parsed = try SentencePieceModelProto(serialized: bytes, source: path)
        var rebuilt = SentencePieceModelProto(pieces: parsed.pieces)
        rebuilt.unknownID = parsed.unknownID
        let original = try GemmaTokenizer(contentsOf: path)
        let copy = try GemmaTokenizer(serializedModel: rebuilt.serialized(), source: "rebuilt")
        let fixture = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)
            .deletingLastPathComponent().appendingPathComponent("expected.json"))) as! [String: Any]
        for item in fixture["encode"] as! [[String: Any]] {
            let text = item["text"] as! String
            XCTAssertEqual(copy.encode(text, addBOS: true), original.encode(text, addBOS: true), text)
            XCTAssertEqual(copy.decode(original.encode(text, addBOS: false)), text)
        }
        XCTAssertEqual(copy.startOfTurn, original.startOfTurn)
        XCTAssertEqual(copy.stopTokens, original.stopTokens)
    }

    func testGarbageIsAnErrorNotACrash() {
        var generator = SystemRandomNumberGenerator()
        for length in [1, 2, 5, 40, 300] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            _ = try? SentencePieceModelProto(serialized: bytes, source: "garbage")
        }
        XCTAssertThrowsError(try SentencePieceModelProto(serialized: [0x0A, 0x05, 0x01], source: "short")) {
            XCTAssertTrue("\($0)".contains("short"))
        }
    }

    func testRebuiltModelKeepsSpecialPiecesWithGemmaNames() throws {
        var pieces = [("<pad>", SentencePieceModelProto.PieceType.control), ("<eos>", .control), ("<bos>", .control), ("<unk>", .unknown)]
            .map { SentencePieceModelProto.Piece(piece: $0.0, score: 0, type: $0.1) }
        pieces += (0..<256).map { SentencePieceModelProto.Piece(piece: String(format: "<0x%02X>", $0), score: 0, type: .byte) }
        pieces.append(.init(piece: "a", score: -1, type: .normal))
        let tokenizer = try GemmaTokenizer(serializedModel: SentencePieceModelProto(pieces: pieces).serialized(), source: "gemma names")
        XCTAssertEqual([tokenizer.pad, tokenizer.eos, tokenizer.bos, tokenizer.unknown], [0, 1, 2, 3])
        XCTAssertEqual(tokenizer.encode("ab", addBOS: true), [2, 260, 102])
    }
}
