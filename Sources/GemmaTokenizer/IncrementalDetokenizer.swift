/// Turns a stream of token ids into text deltas that are always valid UTF-8.
///
/// Byte-fallback pieces can split one character across several tokens (a 4-byte emoji is
/// four `<0xXX>` tokens); the detokenizer holds such bytes back until the character is
/// complete, or until it is certain they never will be (then, like SentencePiece, each
/// stray byte becomes U+FFFD). The concatenation of every `feed(_:)` result and `finish()`
/// equals `GemmaTokenizer.decode(_:)` of the same ids.
///
/// Ids outside the vocabulary are ignored, as `GemmaTokenizer.decode(_:)` ignores them.
public struct IncrementalDetokenizer: Sendable {
    private let table: TokenSurfaceTable
    /// Bytes of byte-fallback pieces not yet emitted (an unfinished character).
    private var pending: [UInt8] = []
    /// Whether any text has been produced so far (emitted or pending).
    private var producedText = false
    /// SentencePiece's `is_bos_ws`: a leading U+2581 may still be dropped.
    private var atStartOfText = true
    /// SentencePiece's `bos_ws_seen`: the previous text piece had its leading U+2581 dropped.
    private var droppedLeadingSpace = false

    /// Creates a detokenizer for one sequence of generated ids.
    public init(tokenizer: GemmaTokenizer) {
        self.table = tokenizer.surfaces
    }

    /// Whether bytes of an unfinished character are being held back.
    public var hasPendingBytes: Bool { !pending.isEmpty }

    /// Adds one token and returns the text that is now safe to emit (often empty).
    public mutating func feed(_ id: Int32) -> String {
        String(decoding: feedBytes(id), as: UTF8.self)
    }

    /// Adds one token and returns the UTF-8 bytes that are now safe to emit; always a
    /// whole number of well-formed characters.
    mutating func feedBytes(_ id: Int32) -> [UInt8] {
        guard let kind = table.kind(of: id) else { return [] }
        var out: [UInt8] = []
        if kind == .byte {
            pending.append(contentsOf: table.surface(of: id))
            producedText = true
            drainPending(final: false, into: &out)
            return out
        }
        // A non-byte piece ends the byte run: whatever is pending can no longer complete.
        drainPending(final: true, into: &out)
        if droppedLeadingSpace || producedText {
            atStartOfText = false
        }
        var surface = table.surface(of: id)
        droppedLeadingSpace = false
        if kind == .textAfterSpaceSymbol && atStartOfText && table.dropsLeadingSpace {
            surface = surface.dropFirst()
            droppedLeadingSpace = !table.dropsAllLeadingSpaces
        }
        if !surface.isEmpty {
            producedText = true
            out.append(contentsOf: surface)
        }
        return out
    }

    /// Adds several tokens and returns the text that is now safe to emit.
    public mutating func feed<Tokens: Sequence>(_ ids: Tokens) -> String where Tokens.Element == Int32 {
        var text = ""
        for id in ids { text += feed(id) }
        return text
    }

    /// Ends the stream and returns what was held back (each byte of an unfinished character
    /// becomes U+FFFD, as in SentencePiece's decoder).
    public mutating func finish() -> String {
        String(decoding: finishBytes(), as: UTF8.self)
    }

    /// Ends the stream and returns the held-back bytes, decided as in `finish()`.
    mutating func finishBytes() -> [UInt8] {
        var out: [UInt8] = []
        drainPending(final: true, into: &out)
        return out
    }

    /// Moves every decided character from `pending` to `out`, keeping only a trailing
    /// unfinished character unless `final`.
    private mutating func drainPending(final: Bool, into out: inout [UInt8]) {
        var index = 0
        scan: while index < pending.count {
            switch SentencePieceUTF8.step(pending, at: index, final: final) {
            case .character(let length):
                out.append(contentsOf: pending[index ..< index + length])
                index += length
            case .invalidByte:
                out.append(contentsOf: SentencePieceUTF8.replacementCharacter)
                index += 1
            case .incomplete:
                break scan
            }
        }
        pending.removeFirst(index)
    }
}
