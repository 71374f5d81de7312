import CGemmaKernels
import GemmaQuant

/// A weight matrix of `outputs` x `inputs` (PyTorch's [out, in]) that can multiply a batch
/// of activation rows: y = x W^T. Float, bf16 and quantized storages implement it.
public protocol LinearWeights: Sendable {
    var outputs: Int { get }
    var inputs: Int { get }
    /// y[rows x outputs] = x[rows x inputs] * W^T.
    func multiply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>)
    /// Copies row `index` of W (an embedding lookup) as f32.
    func copyRow(_ index: Int, into out: UnsafeMutablePointer<Float>)
    /// Bytes the weights occupy in memory.
    var byteCount: Int { get }
}

extension LinearWeights {
    /// y = x W^T for a whole activation matrix.
    public func callAsFunction(_ x: Matrix) -> Matrix {
        precondition(x.columns == inputs, "input has \(x.columns) columns, weights take \(inputs)")
        var y = Matrix(rows: x.rows, columns: outputs)
        x.storage.withUnsafeBufferPointer { xp in
            y.storage.withUnsafeMutableBufferPointer { yp in
                multiply(xp.baseAddress!, rows: x.rows, into: yp.baseAddress!)
            }
        }
        return y
    }
}

/// f32 weights, multiplied by `gemma_matmul_float`.
public struct Float32Weights: LinearWeights {
    public let outputs: Int
    public let inputs: Int
    public let values: [Float]

    public init(outputs: Int, inputs: Int, values: [Float]) {
        precondition(values.count == outputs * inputs)
        self.outputs = outputs
        self.inputs = inputs
        self.values = values
    }

    public var byteCount: Int { values.count * 4 }

    public func multiply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        values.withUnsafeBufferPointer { w in
            gemma_matmul_float(Int32(GGMLType.f32.rawValue), w.baseAddress, Int64(outputs), Int64(inputs), x, Int64(rows), y, Int64(outputs))
        }
    }

    public func copyRow(_ index: Int, into out: UnsafeMutablePointer<Float>) {
        values.withUnsafeBufferPointer { w in
            out.update(from: w.baseAddress! + index * inputs, count: inputs)
        }
    }
}
