/// What each token id decodes to, as bytes, precomputed once per tokenizer so that the
/// incremental detokenizer never calls into SentencePiece.
///
/// Mirrors SentencePiece's `Decode`: control pieces decode to nothing, the unknown piece to
/// the unknown surface, byte pieces `<0xXX>` to that byte (joined with neighbouring byte
/// pieces into UTF-8), and every other piece (normal, user-defined, unused) to its spelling
/// with U+2581 replaced by a space.
struct TokenSurfaceTable: Sendable {
    /// How an id decodes.
    enum Kind: UInt8, Sendable {
        /// Decodes to nothing.
        case control
        /// Decodes to the unknown surface; never loses a leading space.
        case unknown
        /// One raw byte, possibly part of a multi-byte character.
        case byte
        /// Text not starting with U+2581.
        case text
        /// Text whose spelling starts with U+2581 (decoded as a space that SentencePiece
        /// drops at the start of the output when the normalizer adds a dummy prefix).
        case textAfterSpaceSymbol
    }

    private let kinds: [Kind]
    /// `offsets[id] ..< offsets[id + 1]` is the range of `bytes` that id decodes to.
    private let offsets: [Int]
    private let bytes: [UInt8]

    /// Whether the decoder drops the space of a leading U+2581
    /// (`add_dummy_prefix || remove_extra_whitespaces` in the normalizer spec).
    let dropsLeadingSpace: Bool
    /// Whether every leading U+2581 is dropped, not just the first
    /// (`remove_extra_whitespaces`).
    let dropsAllLeadingSpaces: Bool

    init(model: SentencePieceModel) {
        let count = model.vocabularySize
        let unknownSurface = model.unknownID.flatMap { try? model.decode([$0]) } ?? " \u{2047} "
        var kinds = [Kind]()
        var offsets = [Int]()
        var bytes = [UInt8]()
        kinds.reserveCapacity(count)
        offsets.reserveCapacity(count + 1)
        bytes.reserveCapacity(count * 6)
        offsets.append(0)
        for index in 0 ..< count {
            let id = Int32(index)
            let piece = model.pieceBytes(for: id) ?? []
            if model.isControl(id) {
                kinds.append(.control)
            } else if model.isUnknown(id) {
                kinds.append(.unknown)
                bytes.append(contentsOf: unknownSurface.utf8)
            } else if model.isByte(id), let byte = Self.byteValue(ofPiece: piece) {
                kinds.append(.byte)
                bytes.append(byte)
            } else {
                let startsWithSpaceSymbol = piece.starts(with: Self.spaceSymbol)
                kinds.append(startsWithSpaceSymbol ? .textAfterSpaceSymbol : .text)
                Self.appendReplacingSpaceSymbol(piece, to: &bytes)
            }
            offsets.append(bytes.count)
        }
        self.kinds = kinds
        self.offsets = offsets
        self.bytes = bytes
        let flags = model.normalizerFlags
        self.dropsLeadingSpace = flags.addDummyPrefix || flags.removeExtraWhitespaces
        self.dropsAllLeadingSpaces = flags.removeExtraWhitespaces
    }

    /// Number of ids in the table.
    var count: Int { kinds.count }

    /// How `id` decodes, or nil when it is outside the vocabulary.
    func kind(of id: Int32) -> Kind? {
        id >= 0 && Int(id) < kinds.count ? kinds[Int(id)] : nil
    }

    /// The bytes `id` decodes to (empty for ids outside the vocabulary).
    func surface(of id: Int32) -> ArraySlice<UInt8> {
        guard id >= 0 && Int(id) < kinds.count else { return [] }
        return bytes[offsets[Int(id)] ..< offsets[Int(id) + 1]]
    }

    /// U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's visible space, in UTF-8.
    static let spaceSymbol: [UInt8] = [0xE2, 0x96, 0x81]

    private static func appendReplacingSpaceSymbol(_ piece: [UInt8], to bytes: inout [UInt8]) {
        var index = 0
        while index < piece.count {
            if piece[index] == 0xE2, index + 2 < piece.count,
               piece[index + 1] == 0x96, piece[index + 2] == 0x81 {
                bytes.append(0x20)
                index += 3
            } else {
                bytes.append(piece[index])
                index += 1
            }
        }
    }

    /// Parses `<0xXX>` (SentencePiece's byte-piece spelling).
    private static func byteValue(ofPiece piece: [UInt8]) -> UInt8? {
        guard piece.count == 6, piece[0] == UInt8(ascii: "<"), piece[1] == UInt8(ascii: "0"),
              piece[2] == UInt8(ascii: "x"), piece[5] == UInt8(ascii: ">") else { return nil }
        return UInt8(String(decoding: piece[3 ..< 5], as: UTF8.self), radix: 16)
    }
}
