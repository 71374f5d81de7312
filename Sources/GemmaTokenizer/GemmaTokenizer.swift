import Foundation

/// Gemma's tokenizer: SentencePiece encode/decode plus the special ids a Gemma server needs,
/// all looked up in the model (never hard-coded).
///
/// Immutable and safe to share between threads and tasks.
public final class GemmaTokenizer: Sendable {
    /// The underlying SentencePiece model.
    public let model: SentencePieceModel
    /// Number of ids the tokenizer knows (`0 ..< vocabularySize`).
    public let vocabularySize: Int
    /// Beginning-of-sequence id (trainer spec `bos_piece`); starts every prompt.
    public let bos: Int32
    /// End-of-sequence id (trainer spec `eos_piece`).
    public let eos: Int32
    /// Padding id (trainer spec `pad_piece`), if the model has one.
    public let pad: Int32?
    /// Unknown-piece id (trainer spec `unk_piece`).
    public let unknown: Int32
    /// Id of the piece `<start_of_turn>`, if the model has it.
    public let startOfTurn: Int32?
    /// Id of the piece `<end_of_turn>`, if the model has it.
    public let endOfTurn: Int32?
    /// Ids that end generation: `eos`, then `endOfTurn` when present.
    public let stopTokens: [Int32]
    /// Per-id decoded bytes, shared with every `IncrementalDetokenizer`.
    let surfaces: TokenSurfaceTable

    /// The spelling of the start-of-turn piece.
    public static let startOfTurnPiece = "<start_of_turn>"
    /// The spelling of the end-of-turn piece.
    public static let endOfTurnPiece = "<end_of_turn>"

    /// Wraps a loaded model, looking up its special ids.
    ///
    /// - Throws: `TokenizerError.missingSpecialToken` when the model has no BOS, EOS or
    ///   unknown piece.
    public init(model: SentencePieceModel) throws {
        guard let bos = model.bosID else {
            throw TokenizerError.missingSpecialToken(name: "BOS", source: model.source)
        }
        guard let eos = model.eosID else {
            throw TokenizerError.missingSpecialToken(name: "EOS", source: model.source)
        }
        guard let unknown = model.unknownID else {
            throw TokenizerError.missingSpecialToken(name: "unknown", source: model.source)
        }
        self.model = model
        self.vocabularySize = model.vocabularySize
        self.bos = bos
        self.eos = eos
        self.pad = model.padID
        self.unknown = unknown
        self.startOfTurn = model.id(forPiece: Self.startOfTurnPiece)
        self.endOfTurn = model.id(forPiece: Self.endOfTurnPiece)
        self.stopTokens = [eos] + (endOfTurn.map { [$0] } ?? [])
        self.surfaces = TokenSurfaceTable(model: model)
    }

    /// Loads `tokenizer.model` from a file path, or from a directory that contains one
    /// (such as a Hugging Face checkpoint directory).
    ///
    /// - Throws: `TokenizerError` naming the file when it is missing or not a usable model.
    public convenience init(contentsOf path: String) throws {
        var isDirectory: ObjCBool = false
        var file = path
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            file = URL(fileURLWithPath: path).appendingPathComponent("tokenizer.model").path
        }
        try self.init(model: SentencePieceModel(contentsOf: file))
    }

    /// Builds a tokenizer from the bytes of a serialized SentencePiece model.
    ///
    /// - Parameter source: names the bytes in error messages.
    public convenience init(serializedModel bytes: [UInt8], source: String = "in-memory model") throws {
        try self.init(model: SentencePieceModel(serialized: bytes, source: source))
    }

    /// Encodes text into ids, with `bos` first when `addBOS` is true (never an EOS).
    ///
    /// Pieces the model defines as user-defined symbols (such as `<start_of_turn>`) are
    /// recognised inside `text`.
    public func encode(_ text: String, addBOS: Bool) -> [Int32] {
        let ids: [Int32]
        do {
            ids = try model.encode(text)
        } catch {
            // SentencePiece only fails to encode valid UTF-8 when the model is broken, and
            // a broken model cannot get past init.
            preconditionFailure("\(error)")
        }
        return addBOS ? [bos] + ids : ids
    }

    /// Decodes ids into text exactly as SentencePiece does. Control ids (BOS, EOS, padding)
    /// vanish; user-defined pieces such as `<end_of_turn>` appear as their spelling; ids
    /// outside the vocabulary are skipped.
    public func decode(_ ids: [Int32]) -> String {
        let valid = ids.allSatisfy(isValid) ? ids : ids.filter(isValid)
        do {
            return try model.decode(valid)
        } catch {
            preconditionFailure("\(error)")
        }
    }

    /// The piece spelled for `id`, or nil when `id` is outside the vocabulary.
    public func piece(for id: Int32) -> String? {
        model.piece(for: id)
    }

    /// The id of the piece spelled exactly `piece`, or nil when the vocabulary has none.
    public func id(forPiece piece: String) -> Int32? {
        model.id(forPiece: piece)
    }

    /// Whether generation should stop after `id` (it is EOS or `<end_of_turn>`).
    public func isStopToken(_ id: Int32) -> Bool {
        stopTokens.contains(id)
    }

    /// A fresh detokenizer for streaming one sequence's generated ids.
    public func makeDetokenizer() -> IncrementalDetokenizer {
        IncrementalDetokenizer(tokenizer: self)
    }

    private func isValid(_ id: Int32) -> Bool {
        id >= 0 && Int(id) < vocabularySize
    }
}
