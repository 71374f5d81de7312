import COpenBLAS

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
        let attended = attend(queries: q, keys: k, values: v, segments: segments,
                              localIndex: localIndex, config: config)
        Ops.add(&hidden, output(attended))

        // Feed-forward.
        x = hidden
        Ops.rmsNorm(&x, scale: feedForwardNorm, epsilon: config.rmsNormEpsilon)
        var g = gate(x)
        Ops.gatedActivation(&g, up: up(x), activation: config.activation)
        Ops.add(&hidden, down(g))
    }

    /// Stores this batch's keys and values in each sequence's cache, then computes causal
    /// attention of each segment's queries over its sequence's positions 0 ... its own.
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
            let length = start + rows
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
            var scores = [Float](repeating: 0, count: rows * length)
            q.storage.withUnsafeBufferPointer { qp in
                out.storage.withUnsafeMutableBufferPointer { op in
                    cache.keys[localIndex].withUnsafeBufferPointer { kc in
                        cache.values[localIndex].withUnsafeBufferPointer { vc in
                            scores.withUnsafeMutableBufferPointer { sp in
                                for h in 0..<config.headCount {
                                    let g = h / config.headsPerKVHead
                                    let qBase = qp.baseAddress! + firstRow * queryWidth + h * headDim
                                    // scores[rows x length] = scale * Q_h K_g^T
                                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
                                                Int32(rows), Int32(length), Int32(headDim),
                                                scale, qBase, Int32(queryWidth),
                                                kc.baseAddress! + g * headDim, Int32(kvWidth),
                                                0, sp.baseAddress!, Int32(length))
                                    // Causal mask and softmax: row t sees positions 0 ... start + t.
                                    for t in 0..<rows {
                                        let row = sp.baseAddress! + t * length
                                        let visible = start + t + 1
                                        Ops.softmax(row, count: visible)
                                        for p in visible..<length { row[p] = 0 }
                                    }
                                    // out_h[rows x headDim] = P V_g
                                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                                                Int32(rows), Int32(headDim), Int32(length),
                                                1, sp.baseAddress!, Int32(length),
                                                vc.baseAddress! + g * headDim, Int32(kvWidth),
                                                0, op.baseAddress! + firstRow * queryWidth + h * headDim, Int32(queryWidth))
                                }
                            }
                        }
                    }
                }
            }
            firstRow += rows
        }
        return out
    }
}
