import ArgumentParser
import Foundation
import GemmaModel

/// `gemma memory`: what a pipeline stage holding layers [A, B) costs in resident memory, after
/// one forward step has touched all of its weights.
struct MemoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memory", abstract: "Resident memory of a stage that loads only layers A-B (end exclusive).")

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Layer range A-B, end exclusive (default: all layers).")
    var layers: String?

    func run() throws {
        let loaded = try modelOptions.load()
        let config = loaded.source.config
        var range = 0..<config.layerCount
        if let layers {
            let parts = layers.split(separator: "-").compactMap { Int($0) }
            guard parts.count == 2, parts[0] < parts[1] else { throw ValidationError("--layers: expected A-B, e.g. 0-9") }
            range = parts[0]..<parts[1]
        }
        let before = residentBytes()
        let stage = try loaded.transformer(layers: range)
        let tokens: [Int32] = [2, 10, 11, 12, 13, 14, 15, 16]
        var hidden = stage.isFirstStage ? try stage.embed(tokens) : Matrix(rows: tokens.count, columns: config.hiddenSize,
                                                                            storage: (0..<tokens.count * config.hiddenSize).map { Float($0 % 7) * 0.01 })
        try stage.forwardLayers(&hidden, segments: [BatchSegment(cache: stage.makeCache(), startPosition: 0, count: tokens.count)])
        if stage.isLastStage { _ = try stage.logits(hidden, rows: [tokens.count - 1]) }
        let after = residentBytes()
        let fileSize = (try? FileManager.default.attributesOfItem(atPath: modelOptions.model)[.size] as? Int) ?? 0
        print("layers \(range.lowerBound)-\(range.upperBound) of \(config.layerCount)\(stage.isFirstStage ? ", embedding" : "")\(stage.isLastStage ? ", final norm + LM head" : "")")
        print(String(format: "weights of this stage: %.1f MB", Double(stage.weightBytes) / 1e6))
        if fileSize > 0 { print(String(format: "model file: %.1f MB", Double(fileSize) / 1e6)) }
        print(String(format: "resident memory: %.1f MB before loading, %.1f MB after one forward step", Double(before) / 1e6, Double(after) / 1e6))
    }

    /// VmRSS from /proc/self/status.
    func residentBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
    }
}
