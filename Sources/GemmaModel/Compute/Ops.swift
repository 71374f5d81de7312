import CGemmaKernels
import Foundation

/// Element-wise and row-wise operations of the Gemma forward pass, in f32.
enum Ops {
    /// x <- x / sqrt(mean(x^2) + eps) * scale, for each row. `scale` already holds (1 + w).
    static func rmsNorm(_ x: inout Matrix, scale: [Float], epsilon: Float) {
        let n = x.columns
        precondition(scale.count == n)
        x.storage.withUnsafeMutableBufferPointer { buffer in
            scale.withUnsafeBufferPointer { w in
                for r in 0..<x.rows {
                    let row = buffer.baseAddress! + r * n
                    var sum: Float = 0
                    for i in 0..<n { sum += row[i] * row[i] }
                    let inverse = 1 / (sum / Float(n) + epsilon).squareRoot()
                    for i in 0..<n { row[i] = row[i] * inverse * w[i] }
                }
            }
        }
    }

    /// The tanh approximation of GELU (PyTorch's `gelu(approximate="tanh")`).
    @inline(__always)
    static func geluTanh(_ x: Float) -> Float {
        let c: Float = 0.7978845608028654  // sqrt(2 / pi)
        return 0.5 * x * (1 + tanh(c * (x + 0.044715 * x * x * x)))
    }

    /// Exact GELU, x * Phi(x), for configs that ask for it by name.
    @inline(__always)
    static func geluExact(_ x: Float) -> Float {
        0.5 * x * (1 + erf(x * 0.7071067811865476))
    }

    /// gate <- act(gate) * up, element-wise (the GeGLU of Gemma's MLP).
    static func gatedActivation(_ gate: inout Matrix, up: Matrix, activation: Activation) {
        precondition(gate.storage.count == up.storage.count)
        gate.storage.withUnsafeMutableBufferPointer { g in
            up.storage.withUnsafeBufferPointer { u in
                switch activation {
                case .geluTanh:
                    gemma_gelu_tanh_mul(g.baseAddress!, u.baseAddress!, Int64(g.count))
                case .geluExact:
                    for i in 0..<g.count { g[i] = geluExact(g[i]) * u[i] }
                }
            }
        }
    }

    /// a <- a + b.
    static func add(_ a: inout Matrix, _ b: Matrix) {
        precondition(a.storage.count == b.storage.count)
        a.storage.withUnsafeMutableBufferPointer { x in
            b.storage.withUnsafeBufferPointer { y in
                for i in 0..<x.count { x[i] += y[i] }
            }
        }
    }

    /// In-place softmax over `count` values.
    static func softmax(_ values: UnsafeMutablePointer<Float>, count: Int) {
        var maximum = -Float.infinity
        for i in 0..<count { maximum = max(maximum, values[i]) }
        var sum: Float = 0
        for i in 0..<count {
            let e = expf(values[i] - maximum)
            values[i] = e
            sum += e
        }
        let inverse = 1 / sum
        for i in 0..<count { values[i] *= inverse }
    }
}

/// Rotary position embedding ("rotate half": dimension i pairs with i + headDim/2), with the
/// cos/sin of each row's position computed once per forward pass and shared by all layers.
struct RotaryTable {
    let half: Int
    /// [rows x half] each.
    private(set) var cos: [Float]
    private(set) var sin: [Float]

    /// inv_freq[i] = 1 / theta^(2i/headDim), in f32 as transformers computes it.
    static func inverseFrequencies(headDim: Int, theta: Float) -> [Float] {
        (0..<headDim / 2).map { i in 1 / powf(theta, Float(2 * i) / Float(headDim)) }
    }

    init(positions: [Int], inverseFrequencies: [Float]) {
        half = inverseFrequencies.count
        var cos = [Float](repeating: 0, count: positions.count * half)
        var sin = cos
        for (r, position) in positions.enumerated() {
            for i in 0..<half {
                let angle = Float(position) * inverseFrequencies[i]
                cos[r * half + i] = cosf(angle)
                sin[r * half + i] = sinf(angle)
            }
        }
        self.cos = cos
        self.sin = sin
    }

    /// Rotates every head of every row of `x` ([rows x heads*headDim]) in place.
    func apply(_ x: inout Matrix, heads: Int) {
        let headDim = 2 * half
        precondition(x.columns == heads * headDim)
        x.storage.withUnsafeMutableBufferPointer { buffer in
            cos.withUnsafeBufferPointer { c in
                sin.withUnsafeBufferPointer { s in
                    for r in 0..<x.rows {
                        for h in 0..<heads {
                            let v = buffer.baseAddress! + r * x.columns + h * headDim
                            for i in 0..<half {
                                let a = v[i], b = v[i + half]
                                let cv = c[r * half + i], sv = s[r * half + i]
                                v[i] = a * cv - b * sv
                                v[i + half] = b * cv + a * sv
                            }
                        }
                    }
                }
            }
        }
    }
}
