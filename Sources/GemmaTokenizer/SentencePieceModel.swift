import CSentencePiece
import Foundation

/// A loaded SentencePiece model: a thin owner of libsentencepiece's processor.
///
/// The processor is immutable once loaded and SentencePiece's encode/decode/lookup calls
/// are `const`, so one instance may be used from many threads at once.
public final class SentencePieceModel: @unchecked Sendable {
    private let handle: OpaquePointer

    /// Where the model came from (a file path or a description of in-memory bytes);
    /// used in error messages.
    public let source: String

    /// Number of pieces in the vocabulary.
    public let vocabularySize: Int

    /// Loads a serialized SentencePiece model (`tokenizer.model`) from a file.
    ///
    /// - Throws: `TokenizerError.fileNotFound` when nothing is at `path`, and
    ///   `TokenizerError.invalidModel` (naming `path`) when the file is not a usable model.
    public convenience init(contentsOf path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TokenizerError.fileNotFound(path: path)
        }
        if isDirectory.boolValue {
            throw TokenizerError.invalidModel(source: path, reason: "is a directory, not a model file")
        }
        var error: UnsafeMutablePointer<CChar>?
        guard let handle = spm_load_file(path, &error) else {
            throw TokenizerError.invalidModel(source: path, reason: Self.takeMessage(error))
        }
        self.init(handle: handle, source: path)
    }

    /// Loads a model from the bytes of a serialized SentencePiece `ModelProto` (for example
    /// one rebuilt from a GGUF file's tokenizer metadata).
    ///
    /// - Parameter source: names the bytes in error messages.
    /// - Throws: `TokenizerError.invalidModel` when the bytes are not a usable model.
    public convenience init(serialized bytes: [UInt8], source: String = "in-memory model") throws {
        var error: UnsafeMutablePointer<CChar>?
        let loaded = bytes.withUnsafeBytes { buffer in
            spm_load_serialized(buffer.baseAddress, buffer.count, &error)
        }
        guard let handle = loaded else {
            throw TokenizerError.invalidModel(
                source: "\(source) (\(bytes.count) bytes)", reason: Self.takeMessage(error))
        }
        self.init(handle: handle, source: source)
    }

    private init(handle: OpaquePointer, source: String) {
        self.handle = handle
        self.source = source
        self.vocabularySize = Int(spm_vocab_size(handle))
    }

    deinit {
        spm_free(handle)
    }

    /// Encodes text into piece ids (no BOS or EOS).
    ///
    /// - Throws: `TokenizerError.invalidModel` with SentencePiece's message if encoding fails.
    public func encode(_ text: String) throws -> [Int32] {
        var text = text
        return try text.withUTF8 { utf8 in
            var ids: UnsafeMutablePointer<Int32>?
            var count = 0
            var error: UnsafeMutablePointer<CChar>?
            let status = utf8.withMemoryRebound(to: CChar.self) { chars in
                spm_encode(handle, chars.baseAddress, chars.count, &ids, &count, &error)
            }
            guard status == 0 else {
                throw TokenizerError.invalidModel(source: source, reason: "encode failed: \(Self.takeMessage(error))")
            }
            defer { spm_ids_free(ids) }
            guard let ids else { return [] }
            return Array(UnsafeBufferPointer(start: ids, count: count))
        }
    }

    /// Decodes ids into text exactly as SentencePiece does (control pieces vanish, byte
    /// pieces are joined into UTF-8, invalid bytes become U+FFFD).
    ///
    /// - Throws: `TokenizerError.invalidModel` with SentencePiece's message, for example
    ///   for an id outside the vocabulary.
    public func decode(_ ids: [Int32]) throws -> String {
        var length = 0
        var error: UnsafeMutablePointer<CChar>?
        let text = ids.withUnsafeBufferPointer { buffer in
            spm_decode(handle, buffer.baseAddress, buffer.count, &length, &error)
        }
        guard let text else {
            throw TokenizerError.invalidModel(source: source, reason: "decode failed: \(Self.takeMessage(error))")
        }
        defer { spm_string_free(text) }
        return text.withMemoryRebound(to: UInt8.self, capacity: length) { bytes in
            String(decoding: UnsafeBufferPointer(start: bytes, count: length), as: UTF8.self)
        }
    }

    /// The raw UTF-8 bytes of the piece for `id` (U+2581 not replaced), or nil when out of range.
    public func pieceBytes(for id: Int32) -> [UInt8]? {
        var length = 0
        guard let piece = spm_id_to_piece(handle, id, &length) else { return nil }
        return piece.withMemoryRebound(to: UInt8.self, capacity: length) { bytes in
            Array(UnsafeBufferPointer(start: bytes, count: length))
        }
    }

    /// The piece spelled for `id` (for example `"▁the"` or `"<0x0A>"`), or nil when out of range.
    public func piece(for id: Int32) -> String? {
        pieceBytes(for: id).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The id of the piece spelled exactly `piece`, or nil when the vocabulary has none.
    public func id(forPiece piece: String) -> Int32? {
        var piece = piece
        let id = piece.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { chars in
                spm_piece_to_id(handle, chars.baseAddress, chars.count)
            }
        }
        return id >= 0 ? id : nil
    }

    /// The piece's score in the model (0 for ids out of range).
    public func score(of id: Int32) -> Float { spm_score(handle, id) }

    /// Whether `id` is a control piece (`<s>`, `</s>`, `<pad>`): decoded to nothing.
    public func isControl(_ id: Int32) -> Bool { spm_is_control(handle, id) != 0 }

    /// Whether `id` is the unknown piece: decoded to the unknown surface (" ⁇ " by default).
    public func isUnknown(_ id: Int32) -> Bool { spm_is_unknown(handle, id) != 0 }

    /// Whether `id` is a byte-fallback piece `<0xXX>`.
    public func isByte(_ id: Int32) -> Bool { spm_is_byte(handle, id) != 0 }

    /// Whether `id` is an unused (reserved) piece.
    public func isUnused(_ id: Int32) -> Bool { spm_is_unused(handle, id) != 0 }

    /// The BOS id named by the trainer spec, or nil when the model has none.
    public var bosID: Int32? { Self.optionalID(spm_bos_id(handle)) }

    /// The EOS id named by the trainer spec, or nil when the model has none.
    public var eosID: Int32? { Self.optionalID(spm_eos_id(handle)) }

    /// The padding id named by the trainer spec, or nil when the model has none.
    public var padID: Int32? { Self.optionalID(spm_pad_id(handle)) }

    /// The unknown-piece id named by the trainer spec, or nil when the model has none.
    public var unknownID: Int32? { Self.optionalID(spm_unk_id(handle)) }

    /// The normalizer settings that make SentencePiece's decoder drop a leading space.
    var normalizerFlags: (addDummyPrefix: Bool, removeExtraWhitespaces: Bool) {
        var addDummyPrefix: Int32 = 0
        var removeExtraWhitespaces: Int32 = 0
        spm_normalizer_flags(handle, &addDummyPrefix, &removeExtraWhitespaces)
        return (addDummyPrefix != 0, removeExtraWhitespaces != 0)
    }

    private static func optionalID(_ id: Int32) -> Int32? { id >= 0 ? id : nil }

    /// Copies and frees a message allocated by the shim.
    private static func takeMessage(_ message: UnsafeMutablePointer<CChar>?) -> String {
        guard let message else { return "unknown error" }
        defer { spm_string_free(message) }
        return String(cString: message)
    }
}
