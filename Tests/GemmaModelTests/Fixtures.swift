import Foundation
import GemmaModel

/// Paths to the committed fixtures and readers for transformers' reference outputs.
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func model(_ name: String) -> String {
        root.appendingPathComponent("models").appendingPathComponent(name).path
    }

    static let modelNames = ["tiny-mqa", "tiny-mha", "tiny-gqa"]

    /// One prompt of `reference.json`: its tokens, transformers' f32 logits at every
    /// position, and the 24-token greedy continuation.
    struct ReferencePrompt {
        let tokens: [Int32]
        let logits: [[Float]]
        let greedyContinuation: [Int32]
    }

    static func reference(_ name: String) throws -> [ReferencePrompt] {
        let dir = URL(fileURLWithPath: model(name))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("reference.json"))) as! [String: Any]
        let vocab = json["vocab_size"] as! Int
        let raw = try Data(contentsOf: dir.appendingPathComponent(json["logits_file"] as! String))
        let floats: [Float] = raw.withUnsafeBytes { bytes in
            (0..<raw.count / 4).map { Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
        return (json["prompts"] as! [[String: Any]]).map { prompt in
            let offset = prompt["logits_offset"] as! Int
            let positions = prompt["positions"] as! Int
            return ReferencePrompt(
                tokens: (prompt["tokens"] as! [Int]).map(Int32.init),
                logits: (0..<positions).map { p in Array(floats[offset + p * vocab..<offset + (p + 1) * vocab]) },
                greedyContinuation: (prompt["greedy_continuation"] as! [Int]).map(Int32.init))
        }
    }

    /// A fresh temporary directory, removed by the caller.
    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("gemma-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// Largest absolute difference between two equally long vectors.
func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}
