import CGemmaKernels
import Dispatch
import Foundation
import Synchronization

/// One Gemma decoder block: pre-norm attention and a pre-norm GeGLU feed-forward, each
/// added to the residual stream.
final class TransformerLayer: @unchecked Sendable {
    let index: Int
    /// Norm scales with the `1 +` already applied.
    let attentionNorm: [Float]
    let feedForwardNorm: [Float]
    let query, key, value, output: LinearWeights
    let gate, up, down: LinearWeights

    init(index: Int, attentionNorm: [Float], feedForwardNorm: [Float],
         query: LinearWeights, key: LinearWeights, value: LinearWeights, output: LinearWeights,
         gate: LinearWeights, up: LinearWeights, down: LinearWeights) {
        self.index = index
        self.attentionNorm = attentionNorm
        self.feedForwardNorm = feedForwardNorm
        self.query = query
        self.key = key
        self.value = value
        self.output = output
        self.gate = gate
        self.up = up
        self.down = down
    }

    /// Runs the block on a batch of rows; `localIndex` selects this layer's slot in the caches.
    func forward(_ hidden: inout Matrix, segments: [BatchSegment], localIndex: Int,
                 rotary: RotaryTable, config: GemmaConfig) {
        // Attention.
        var x = hidden
        Ops.rmsNorm(&x, scale: attentionNorm, epsilon: config.rmsNormEpsilon)
        var q = query(x)
        var k = key(x)
        let v = value(x)
        rotary.apply(&q, heads: config.headCount)
        rotary.apply(&k, heads: config.kvHeadCount)
        let attentionStart = AttentionClock.isRunning ? DispatchTime.now().uptimeNanoseconds : 0
        let attended = attend(queries: q, keys: k, values: v, segments: segments,
                              localIndex: localIndex, config: config)
        if AttentionClock.isRunning { AttentionClock.add(DispatchTime.now().uptimeNanoseconds - attentionStart) }
        Ops.add(&hidden, output(attended))

        // Feed-forward.
        x = hidden
        Ops.rmsNorm(&x, scale: feedForwardNorm, epsilon: config.rmsNormEpsilon)
        var g = gate(x)
        Ops.gatedActivation(&g, up: up(x), activation: config.activation)
        Ops.add(&hidden, down(g))
    }

    /// Stores this batch's keys and values in each sequence's cache, then computes causal
    /// attention of each segment's queries over its sequence's positions 0 ... its own
    /// (`gemma_attention`: linear in the context, all heads of a KV head at once).
    private func attend(queries q: Matrix, keys k: Matrix, values v: Matrix, segments: [BatchSegment],
                        localIndex: Int, config: GemmaConfig) -> Matrix {
        let headDim = config.headDim
        let queryWidth = config.queryWidth
        let kvWidth = config.kvWidth
        let scale = 1 / Float(headDim).squareRoot()
        var out = Matrix(rows: q.rows, columns: queryWidth)
        var firstRow = 0
        for segment in segments {
            let cache = segment.cache
            let rows = segment.count
            let start = segment.startPosition
            // Write keys and values at their positions.
            k.storage.withUnsafeBufferPointer { kp in
                cache.keys[localIndex].withUnsafeMutableBufferPointer { dst in
                    (dst.baseAddress! + start * kvWidth).update(from: kp.baseAddress! + firstRow * kvWidth, count: rows * kvWidth)
                }
            }
            v.storage.withUnsafeBufferPointer { vp in
                cache.values[localIndex].withUnsafeMutableBufferPointer { dst in
                    (dst.baseAddress! + start * kvWidth).update(from: vp.baseAddress! + firstRow * kvWidth, count: rows * kvWidth)
                }
            }
            q.storage.withUnsafeBufferPointer { qp in
                out.storage.withUnsafeMutableBufferPointer { op in
                    cache.keys[localIndex].withUnsafeBufferPointer { kc in
                        cache.values[localIndex].withUnsafeBufferPointer { vc in
                            gemma_attention(qp.baseAddress! + firstRow * queryWidth, Int64(queryWidth), Int64(rows), Int64(start),
                                            kc.baseAddress!, vc.baseAddress!, Int64(kvWidth),
                                            Int32(config.headCount), Int32(config.kvHeadCount), Int32(headDim), scale,
                                            op.baseAddress! + firstRow * queryWidth, Int64(queryWidth))
                        }
                    }
                }
            }
            firstRow += rows
        }
        return out
    }
}

/// Time spent in attention (cache writes and `gemma_attention`), summed over layers while
/// running; the engine benchmark uses it to report attention's share of a decode step (the
/// layers run on the benchmark's thread; atomics keep any other caller race-free).
enum AttentionClock {
    private static let nanoseconds = Atomic<UInt64>(0)
    private static let running = Atomic<Bool>(false)

    static var isRunning: Bool { running.load(ordering: .relaxed) }

    static func add(_ elapsed: UInt64) {
        nanoseconds.wrappingAdd(elapsed, ordering: .relaxed)
    }

    /// Starts counting from zero.
    static func start() {
        nanoseconds.store(0, ordering: .relaxed)
        running.store(true, ordering: .relaxed)
    }

    /// Stops counting and returns the seconds counted.
    static func stop() -> Double {
        running.store(false, ordering: .relaxed)
        return Double(nanoseconds.load(ordering: .relaxed)) / 1e9
    }
}
