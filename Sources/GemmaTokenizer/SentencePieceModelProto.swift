/// The parts of SentencePiece's serialized `ModelProto` (src/sentencepiece_model.proto) that a
/// GGUF file carries: every piece with its score and type, and the few trainer and normalizer
/// settings that change how text is encoded. Reads a `tokenizer.model` and writes one back, so
/// a tokenizer can be exported to GGUF metadata and rebuilt from it.
public struct SentencePieceModelProto: Sendable, Equatable {
    /// SentencePiece's piece types; GGUF's `tokenizer.ggml.token_type` uses the same numbers.
    public enum PieceType: Int32, Sendable {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    /// One vocabulary entry.
    public struct Piece: Sendable, Equatable {
        public var piece: String
        public var score: Float
        public var type: PieceType

        public init(piece: String, score: Float, type: PieceType) {
            self.piece = piece
            self.score = score
            self.type = type
        }
    }

    public var pieces: [Piece]
    /// `TrainerSpec.model_type`: 1 unigram, 2 BPE.
    public var modelType: Int32 = 2
    public var byteFallback = true
    public var splitDigits = true
    public var allowWhitespaceOnlyPieces = true
    public var unknownID: Int32 = 3
    public var bosID: Int32 = 2
    public var eosID: Int32 = 1
    public var padID: Int32 = 0
    /// `NormalizerSpec`: Gemma uses identity normalisation, no dummy prefix, whitespace kept.
    public var normalizerName = "identity"
    public var addDummyPrefix = false
    public var removeExtraWhitespaces = false

    public init(pieces: [Piece]) {
        self.pieces = pieces
    }

    /// Parses a serialized `ModelProto`.
    public init(serialized bytes: [UInt8], source: String) throws {
        var reader = ProtoReader(bytes: bytes[...], source: source)
        pieces = []
        // Defaults of the proto2 fields when absent.
        modelType = 1
        byteFallback = false
        splitDigits = false
        allowWhitespaceOnlyPieces = false
        unknownID = 0
        bosID = 1
        eosID = 2
        padID = -1
        normalizerName = ""
        addDummyPrefix = true
        removeExtraWhitespaces = true
        while let (field, value) = try reader.next() {
            switch (field, value) {
            case let (1, .bytes(message)):
                var pieceReader = ProtoReader(bytes: message, source: source)
                var piece = Piece(piece: "", score: 0, type: .normal)
                while let (f, v) = try pieceReader.next() {
                    switch (f, v) {
                    case let (1, .bytes(text)): piece.piece = String(decoding: text, as: UTF8.self)
                    case let (2, .fixed32(bits)): piece.score = Float(bitPattern: bits)
                    case let (3, .varint(type)):
                        guard let known = PieceType(rawValue: Int32(truncatingIfNeeded: type)) else {
                            throw TokenizerError.invalidModel(source: source, reason: "piece \(pieces.count) has unknown type \(type)")
                        }
                        piece.type = known
                    default: break
                    }
                }
                pieces.append(piece)
            case let (2, .bytes(message)):
                var spec = ProtoReader(bytes: message, source: source)
                while let (f, v) = try spec.next() {
                    guard case let .varint(n) = v else { continue }
                    let int = Int32(truncatingIfNeeded: n)
                    switch f {
                    case 3: modelType = int
                    case 25: splitDigits = n != 0
                    case 26: allowWhitespaceOnlyPieces = n != 0
                    case 35: byteFallback = n != 0
                    case 40: unknownID = int
                    case 41: bosID = int
                    case 42: eosID = int
                    case 43: padID = int
                    default: break
                    }
                }
            case let (3, .bytes(message)):
                var spec = ProtoReader(bytes: message, source: source)
                while let (f, v) = try spec.next() {
                    switch (f, v) {
                    case let (1, .bytes(text)): normalizerName = String(decoding: text, as: UTF8.self)
                    case let (3, .varint(n)): addDummyPrefix = n != 0
                    case let (4, .varint(n)): removeExtraWhitespaces = n != 0
                    default: break
                    }
                }
            default:
                break
            }
        }
    }

    /// Serializes a `ModelProto` that libsentencepiece loads: the pieces, a trainer spec with
    /// the settings above, and a normalizer spec. Only the identity normaliser can be rebuilt
    /// (other rules need a precompiled character map that GGUF does not carry).
    public func serialized() -> [UInt8] {
        var out = ProtoWriter()
        for piece in pieces {
            var message = ProtoWriter()
            message.bytes(1, Array(piece.piece.utf8))
            message.fixed32(2, piece.score.bitPattern)
            message.varint(3, UInt64(piece.type.rawValue))
            out.bytes(1, message.buffer)
        }
        var trainer = ProtoWriter()
        trainer.varint(3, UInt64(modelType))
        trainer.varint(4, UInt64(pieces.count))
        trainer.varint(25, splitDigits ? 1 : 0)
        trainer.varint(26, allowWhitespaceOnlyPieces ? 1 : 0)
        trainer.varint(35, byteFallback ? 1 : 0)
        trainer.varint(40, UInt64(bitPattern: Int64(unknownID)))
        trainer.varint(41, UInt64(bitPattern: Int64(bosID)))
        trainer.varint(42, UInt64(bitPattern: Int64(eosID)))
        trainer.varint(43, UInt64(bitPattern: Int64(padID)))
        // SentencePiece finds its special ids by these pieces (defaults <unk>, <s>, </s>, <pad>).
        for (field, id) in [(45, unknownID), (46, bosID), (47, eosID), (48, padID)] where id >= 0 && Int(id) < pieces.count {
            trainer.bytes(field, Array(pieces[Int(id)].piece.utf8))
        }
        out.bytes(2, trainer.buffer)
        var normalizer = ProtoWriter()
        normalizer.bytes(1, Array(normalizerName.utf8))
        normalizer.varint(3, addDummyPrefix ? 1 : 0)
        normalizer.varint(4, removeExtraWhitespaces ? 1 : 0)
        normalizer.varint(5, 1)
        out.bytes(3, normalizer.buffer)
        return out.buffer
    }
}

/// A protobuf wire-format field value.
enum ProtoValue {
    case varint(UInt64)
    case fixed64(UInt64)
    case bytes(ArraySlice<UInt8>)
    case fixed32(UInt32)
}

/// Reads protobuf wire format field by field, checking every length against the bytes left.
struct ProtoReader {
    var bytes: ArraySlice<UInt8>
    let source: String

    private func fail(_ what: String) -> TokenizerError {
        .invalidModel(source: source, reason: "malformed model protobuf: \(what)")
    }

    mutating func readVarint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard let byte = bytes.popFirst() else { throw fail("truncated varint") }
            guard shift < 64 else { throw fail("varint too long") }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0, count <= bytes.count else { throw fail("field of \(count) bytes with \(bytes.count) left") }
        let taken = bytes.prefix(count)
        bytes = bytes.dropFirst(count)
        return taken
    }

    /// The next (field number, value), or nil at the end.
    mutating func next() throws -> (Int, ProtoValue)? {
        guard !bytes.isEmpty else { return nil }
        let key = try readVarint()
        let field = Int(key >> 3)
        switch key & 7 {
        case 0: return (field, .varint(try readVarint()))
        case 1:
            let raw = try take(8)
            return (field, .fixed64(raw.reversed().reduce(0) { $0 << 8 | UInt64($1) }))
        case 2:
            let length = try readVarint()
            guard length <= UInt64(Int.max) else { throw fail("length \(length)") }
            return (field, .bytes(try take(Int(length))))
        case 5:
            let raw = try take(4)
            return (field, .fixed32(raw.reversed().reduce(0) { $0 << 8 | UInt32($1) }))
        default:
            throw fail("wire type \(key & 7) of field \(field)")
        }
    }
}

/// Writes protobuf wire format.
struct ProtoWriter {
    var buffer: [UInt8] = []

    mutating func rawVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            buffer.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        buffer.append(UInt8(v))
    }

    mutating func varint(_ field: Int, _ value: UInt64) {
        rawVarint(UInt64(field) << 3)
        rawVarint(value)
    }

    mutating func fixed32(_ field: Int, _ value: UInt32) {
        rawVarint(UInt64(field) << 3 | 5)
        withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
    }

    mutating func bytes(_ field: Int, _ value: [UInt8]) {
        rawVarint(UInt64(field) << 3 | 2)
        rawVarint(UInt64(value.count))
        buffer.append(contentsOf: value)
    }
}
