import Foundation
import GemmaCluster
import GemmaWire
import Logging

/// What the stages said at start: the model they serve and how much they hold.
public struct PipelineSummary: Sendable, Equatable {
    /// The model's fingerprint (the same on every stage).
    public var fingerprint: String
    /// The model's context length (smallest any stage reports).
    public var modelContextLength: Int
    /// Positions of KV cache the smallest stage replica holds.
    public var kvPositionCapacity: Int

    /// The context the router serves: the config's `context_length` (or the model's), never
    /// more than the model's or than the smallest stage's KV cache can hold for one sequence.
    public func servedContextLength(configured: Int?) -> Int {
        min(configured ?? modelContextLength, modelContextLength, kvPositionCapacity)
    }
}

/// A pipeline that does not match its config: names the stage and the replica.
public struct PipelineCheckError: Error, CustomStringConvertible {
    public let description: String
}

/// Asks every replica of every stage for its Info and checks it against the config: its layer
/// range, the model's layer count, and one model fingerprint across all stages. Replicas that do
/// not answer yet are asked again until `timeout` (workers may still be loading); a replica
/// that answers with the wrong layers or model fails at once.
/// - Returns: the fingerprint, the model's context and the smallest KV capacity.
public func checkPipeline(config: ClusterConfig, stages: [[RPCClient]], tokenizer: RPCClient,
                          timeout: Duration = .seconds(60), logger: Logger) async throws -> PipelineSummary {
    let deadline = ContinuousClock.now + timeout
    var infos: [[Gemma_V1_ShardInfo?]] = stages.map { Array(repeating: nil, count: $0.count) }
    var tokenizerAnswered = false
    while true {
        var missing: [String] = []
        if !tokenizerAnswered {
            do {
                _ = try await tokenizer.call(TokenizerRPC.info, .init(), timeout: .seconds(2))
                tokenizerAnswered = true
            } catch {
                missing.append("the tokenizer (\(config.tokenizer.joined(separator: ", "))): \(error)")
            }
        }
        for (s, replicas) in stages.enumerated() {
            for (r, client) in replicas.enumerated() where infos[s][r] == nil {
                let name = "stage \(s) (layers \(config.stages[s].layers)) replica \(r) (\(config.stages[s].replicas[r]))"
                do {
                    let info = try await client.call(ShardRPC.info, .init(), timeout: .seconds(2))
                    let range = config.stages[s].layerRange!
                    guard Int(info.firstLayer) == range.lowerBound, Int(info.endLayer) == range.upperBound else {
                        throw PipelineCheckError(description: "\(name) serves layers \(info.firstLayer)-\(info.endLayer), not \(config.stages[s].layers) as the config says")
                    }
                    guard Int(info.layerCount) == config.layerCount else {
                        throw PipelineCheckError(description: "\(name) has a model of \(info.layerCount) layers, but the config's stages cover \(config.layerCount)")
                    }
                    infos[s][r] = info
                    logger.info("stage replica ready", metadata: ["stage": "\(s)", "replica": "\(r)", "layers": "\(config.stages[s].layers)",
                                                                  "fingerprint": "\(info.modelFingerprint.prefix(16))"])
                } catch let error as PipelineCheckError {
                    throw error
                } catch {
                    missing.append("\(name): \(error)")
                }
            }
        }
        // Every stage that answered must hold the same model.
        var reference: (name: String, fingerprint: String)?
        for (s, replicas) in infos.enumerated() {
            for (r, info) in replicas.enumerated() {
                guard let info else { continue }
                let name = "stage \(s) (layers \(config.stages[s].layers)) replica \(r) (\(config.stages[s].replicas[r]))"
                if let reference, reference.fingerprint != info.modelFingerprint {
                    throw PipelineCheckError(description: "\(name) holds model \(info.modelFingerprint.prefix(16))…, but \(reference.name) holds \(reference.fingerprint.prefix(16))…: every stage must serve the same model")
                }
                if reference == nil { reference = (name, info.modelFingerprint) }
            }
        }
        if missing.isEmpty, let reference {
            let all = infos.joined().compactMap { $0 }
            return PipelineSummary(
                fingerprint: reference.fingerprint,
                modelContextLength: all.map { Int($0.contextLength) }.filter { $0 > 0 }.min() ?? config.effectiveContextLength,
                kvPositionCapacity: all.map { $0.kvBytesPerPosition == 0 ? Int.max : Int(clamping: $0.kvCapacityBytes / $0.kvBytesPerPosition) }.min() ?? .max)
        }
        if ContinuousClock.now >= deadline {
            throw PipelineCheckError(description: "gave up waiting for the pipeline: " + missing.joined(separator: "; "))
        }
        logger.info("waiting for workers", metadata: ["missing": "\(missing.count)"])
        try await Task.sleep(for: .milliseconds(500))
    }
}
