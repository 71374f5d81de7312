/// SentencePiece's rule for turning a run of byte-fallback bytes into text
/// (`string_util::DecodeUTF8` as used by `ProcessBytePieces`): each well-formed UTF-8
/// character is kept, and each byte that does not start one becomes U+FFFD on its own.
///
/// This differs from Swift's `String(decoding:as:)`, which replaces a maximal ill-formed
/// subsequence with a single U+FFFD.
enum SentencePieceUTF8 {
    /// The outcome of looking at the bytes at one position.
    enum Step: Equatable {
        /// A well-formed character of this many bytes.
        case character(length: Int)
        /// The first byte is invalid whatever follows: it decodes to U+FFFD.
        case invalidByte
        /// The bytes so far could still become a character once more bytes arrive.
        case incomplete
    }

    /// U+FFFD REPLACEMENT CHARACTER in UTF-8.
    static let replacementCharacter: [UInt8] = [0xEF, 0xBF, 0xBD]

    /// Classifies the character starting at `start`. When `final` is true no more bytes
    /// will come, so a truncated sequence is `invalidByte` (as SentencePiece decides at the
    /// end of a byte run) instead of `incomplete`.
    static func step(_ bytes: [UInt8], at start: Int, final: Bool) -> Step {
        let lead = bytes[start]
        let available = bytes.count - start
        let length: Int
        let minimum: UInt32
        var scalar: UInt32
        switch lead {
        case 0x00 ..< 0x80: return .character(length: 1)
        case _ where lead & 0xE0 == 0xC0: (length, minimum, scalar) = (2, 0x80, UInt32(lead & 0x1F))
        case _ where lead & 0xF0 == 0xE0: (length, minimum, scalar) = (3, 0x800, UInt32(lead & 0x0F))
        case _ where lead & 0xF8 == 0xF0: (length, minimum, scalar) = (4, 0x10000, UInt32(lead & 0x07))
        default: return .invalidByte
        }
        for offset in 1 ..< min(length, available) {
            let trail = bytes[start + offset]
            guard trail & 0xC0 == 0x80 else { return .invalidByte }
            scalar = scalar << 6 | UInt32(trail & 0x3F)
        }
        guard available >= length else { return final ? .invalidByte : .incomplete }
        let isValidScalar = scalar < 0xD800 || (scalar >= 0xE000 && scalar <= 0x10FFFF)
        return scalar >= minimum && isValidScalar ? .character(length: length) : .invalidByte
    }
}
