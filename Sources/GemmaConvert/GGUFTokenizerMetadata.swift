import GemmaModel
import GemmaQuant
import GemmaTokenizer

/// The tokenizer as GGUF metadata (`tokenizer.ggml.*`, llama.cpp's SentencePiece conventions)
/// and back: exported from a `tokenizer.model` when converting, and rebuilt into a working
/// SentencePiece model when a GGUF file comes without one.
public enum GGUFTokenizerMetadata {
    typealias Key = GemmaGGUFNames.Key

    /// Metadata entries for the tokenizer in `tokenizer.model` bytes. When the model's embedding
    /// has more rows (`vocabularySize`) than the tokenizer has pieces, the list is padded with
    /// unused `[PADn]` tokens (score -1000) as llama.cpp's converter does, since llama.cpp
    /// requires one token per embedding row.
    public static func entries(fromModel bytes: [UInt8], source: String, vocabularySize: Int = 0) throws -> [(String, GGUFValue)] {
        let proto = try SentencePieceModelProto(serialized: bytes, source: source)
        let tokenizer = try GemmaTokenizer(serializedModel: bytes, source: source)
        var tokens = proto.pieces.map(\.piece)
        var scores = proto.pieces.map(\.score)
        var types = proto.pieces.map(\.type.rawValue)
        for i in tokens.count..<max(tokens.count, vocabularySize) {
            tokens.append("[PAD\(i)]")
            scores.append(-1000)
            types.append(SentencePieceModelProto.PieceType.unused.rawValue)
        }
        var entries: [(String, GGUFValue)] = [
            (Key.tokenizerModel, .string("llama")),
            (Key.tokenizerPre, .string("default")),
            (Key.tokens, .array(.string(tokens))),
            (Key.scores, .array(.float32(scores))),
            (Key.tokenTypes, .array(.int32(types))),
            (Key.bosID, .uint32(UInt32(tokenizer.bos))),
            (Key.eosID, .uint32(UInt32(tokenizer.eos))),
            (Key.unknownID, .uint32(UInt32(tokenizer.unknown))),
        ]
        if let pad = tokenizer.pad { entries.append((Key.paddingID, .uint32(UInt32(pad)))) }
        if let endOfTurn = tokenizer.endOfTurn { entries.append((Key.eotID, .uint32(UInt32(endOfTurn)))) }
        entries += [(Key.addBOS, .bool(true)), (Key.addEOS, .bool(false)), (Key.addSpacePrefix, .bool(proto.addDummyPrefix))]
        return entries
    }

    /// The tokenizer metadata entries of a GGUF file, to carry over unchanged.
    public static func entries(of file: GGUFFile) -> [(String, GGUFValue)] {
        file.metadata.entries.filter { $0.key.hasPrefix("tokenizer.") }.map { ($0.key, $0.value) }
    }

    /// A SentencePiece model rebuilt from a GGUF file's tokenizer metadata.
    public static func tokenizer(from file: GGUFFile) throws -> GemmaTokenizer {
        try GemmaTokenizer(serializedModel: sentencePieceModel(from: file), source: "tokenizer metadata of \(file.path)")
    }

    /// The serialized SentencePiece model (a tokenizer.model file's bytes) rebuilt from a GGUF
    /// file's tokenizer metadata.
    public static func sentencePieceModel(from file: GGUFFile) throws -> [UInt8] {
        let model = try file.string(Key.tokenizerModel)
        guard model == "llama" else {
            throw GGUFError(path: file.path, problem: .wrongType(key: Key.tokenizerModel, expected: "\"llama\" (SentencePiece)", found: "\"\(model)\""))
        }
        let tokens = try file.stringArray(Key.tokens)
        let scores = try file.floatArray(Key.scores)
        let types = try file.intArray(Key.tokenTypes)
        guard scores.count == tokens.count, types.count == tokens.count else {
            throw GGUFError(path: file.path, problem: .valueOutOfRange(
                key: Key.scores, value: "\(tokens.count) tokens, \(scores.count) scores, \(types.count) token types"))
        }
        var pieces: [SentencePieceModelProto.Piece] = []
        pieces.reserveCapacity(tokens.count)
        for i in 0..<tokens.count {
            guard let raw = Int32(exactly: types[i]), var type = SentencePieceModelProto.PieceType(rawValue: raw) else {
                throw GGUFError(path: file.path, problem: .valueOutOfRange(key: Key.tokenTypes, value: "token \(i) has type \(types[i])"))
            }
            // llama.cpp's converter marks the chat markers normal (or, with a tokenizer_config,
            // control); SentencePiece matches them in text only as user-defined symbols.
            if type == .control || type == .normal, [GemmaTokenizer.startOfTurnPiece, GemmaTokenizer.endOfTurnPiece].contains(tokens[i]) {
                type = .userDefined
            }
            pieces.append(.init(piece: tokens[i], score: scores[i], type: type))
        }
        var proto = SentencePieceModelProto(pieces: pieces)
        /// A token id key's value, which must be a valid index into the pieces.
        func tokenID(_ key: String) throws -> Int32 {
            let value = try file.int(key)
            guard value >= 0, value < pieces.count, let id = Int32(exactly: value) else {
                throw GGUFError(path: file.path, problem: .valueOutOfRange(key: key, value: "\(value) (the tokenizer has \(pieces.count) tokens)"))
            }
            return id
        }
        proto.bosID = try tokenID(Key.bosID)
        proto.eosID = try tokenID(Key.eosID)
        proto.unknownID = file.contains(Key.unknownID) ? try tokenID(Key.unknownID) : Int32(pieces.firstIndex { $0.type == .unknown } ?? 0)
        proto.padID = file.contains(Key.paddingID) ? try tokenID(Key.paddingID) : -1
        proto.addDummyPrefix = file.contains(Key.addSpacePrefix) ? try file.bool(Key.addSpacePrefix) : false
        proto.byteFallback = pieces.contains { $0.type == .byte }
        return proto.serialized()
    }
}
