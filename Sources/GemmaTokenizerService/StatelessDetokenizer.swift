import GemmaTokenizer
import GemmaWire

/// Streaming detokenization whose whole per-sequence state travels with each call, so that a
/// tokenizer service keeps nothing between calls and any replica can serve any step.
///
/// The state of an `IncrementalDetokenizer` between tokens comes down to two things: the bytes
/// of an unfinished UTF-8 character (`pending`, at most 3), and whether text has begun
/// (`started`: a leading U+2581 is no longer dropped). `step` rebuilds a detokenizer in that
/// state, feeds it the new ids, and reads the new state back, so that the text of all steps
/// joined equals `GemmaTokenizer.decode` of all ids.
public struct StatelessDetokenizer: Sendable {
    /// The state carried from one step of a sequence to the next.
    public struct State: Sendable, Equatable {
        /// Bytes of an unfinished character.
        public var pending: [UInt8]
        /// Whether text has begun.
        public var started: Bool

        /// The state of a sequence before its first id.
        public static let initial = State(pending: [], started: false)

        /// A state as a previous step returned it.
        public init(pending: [UInt8], started: Bool) {
            self.pending = pending
            self.started = started
        }
    }

    /// The tokenizer whose ids are decoded.
    public let tokenizer: GemmaTokenizer
    /// The id of each byte piece `<0xXX>`, by byte value (nil when the model has none).
    private let byteTokens: [Int32?]
    /// The byte each id stands for, when it is a byte piece.
    private let byteValues: [Int32: UInt8]
    /// A token that, fed to a fresh detokenizer, puts it in the "started" state.
    private let startToken: Int32?
    /// A piece spelled with a leading U+2581: its decoding shows whether a space is still dropped.
    private let spaceProbe: Int32?

    /// Prepares the byte-piece tables of `tokenizer`.
    public init(tokenizer: GemmaTokenizer) {
        self.tokenizer = tokenizer
        var byteTokens = [Int32?](repeating: nil, count: 256)
        var byteValues: [Int32: UInt8] = [:]
        for value in 0 ..< 256 {
            if let id = tokenizer.id(forPiece: "<0x" + Self.hex(UInt8(value)) + ">"), tokenizer.model.isByte(id) {
                byteTokens[value] = id
                byteValues[id] = UInt8(value)
            }
        }
        self.byteTokens = byteTokens
        self.byteValues = byteValues
        self.startToken = byteTokens[Int(UInt8(ascii: "A"))] ?? Self.firstTextToken(tokenizer)
        self.spaceProbe = tokenizer.id(forPiece: "\u{2581}")
    }

    /// Decodes `ids`, the next ids of a sequence in `state`, and returns the text that is now
    /// final and the state for the next step; with `finish`, also the held-back bytes (as
    /// U+FFFD each) and an initial state.
    ///
    /// - Throws: `RPCError` INVALID_ARGUMENT when `state.pending` is not the start of an
    ///   unfinished UTF-8 character (a client must send back what it was given).
    public func step(_ ids: [Int32], state: State, finish: Bool) throws(RPCError) -> (text: String, state: State) {
        var detokenizer = tokenizer.makeDetokenizer()
        let started = state.started || !state.pending.isEmpty
        if started, let startToken {
            _ = detokenizer.feed(startToken)
        }
        guard state.pending.count <= 3 else {
            throw RPCError(.invalidArgument, "pending holds \(state.pending.count) bytes; an unfinished UTF-8 character has at most 3")
        }
        for byte in state.pending {
            guard let id = byteTokens[Int(byte)] else {
                throw RPCError(.invalidArgument, "pending byte 0x\(Self.hex(byte)) has no byte piece in this tokenizer")
            }
            guard detokenizer.feed(id).isEmpty else {
                throw RPCError(.invalidArgument, "pending bytes \(state.pending.map(Self.hex).joined(separator: " ")) are not the start of an unfinished UTF-8 character")
            }
        }
        guard detokenizer.hasPendingBytes == !state.pending.isEmpty else {
            throw RPCError(.invalidArgument, "pending bytes \(state.pending.map(Self.hex).joined(separator: " ")) are not the start of an unfinished UTF-8 character")
        }

        // The bytes of the trailing run of byte pieces: the pending bytes are always its end.
        var byteRun = state.pending
        var text = ""
        for id in ids {
            text += detokenizer.feed(id)
            if let byte = byteValues[id] {
                byteRun.append(byte)
            } else if id >= 0 && Int(id) < tokenizer.vocabularySize {
                byteRun.removeAll(keepingCapacity: true)
            }
        }
        if finish {
            text += detokenizer.finish()
            return (text, .initial)
        }

        var pending: [UInt8] = []
        if detokenizer.hasPendingBytes {
            // Finishing a copy turns each held-back byte into one U+FFFD.
            var copy = detokenizer
            let held = copy.finish().unicodeScalars.count
            pending = Array(byteRun.suffix(held))
        }
        var nowStarted = started || !text.isEmpty || !pending.isEmpty
        if !nowStarted, let spaceProbe {
            var copy = detokenizer
            nowStarted = copy.feed(spaceProbe).hasPrefix(" ")
        }
        return (text, State(pending: pending, started: nowStarted))
    }

    private static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
    }

    /// The first id that decodes to text on its own (for models without byte pieces).
    private static func firstTextToken(_ tokenizer: GemmaTokenizer) -> Int32? {
        for index in 0 ..< tokenizer.vocabularySize {
            var detokenizer = tokenizer.makeDetokenizer()
            if !detokenizer.feed(Int32(index)).isEmpty { return Int32(index) }
        }
        return nil
    }
}
