/// A dense row-major f32 matrix: the activations that flow through the model
/// (one row per token of the batch).
public struct Matrix: Sendable, Equatable {
    public let rows: Int
    public let columns: Int
    public var storage: [Float]

    public init(rows: Int, columns: Int) {
        self.rows = rows
        self.columns = columns
        storage = [Float](repeating: 0, count: rows * columns)
    }

    public init(rows: Int, columns: Int, storage: [Float]) {
        precondition(storage.count == rows * columns, "storage has \(storage.count) values, not \(rows) x \(columns)")
        self.rows = rows
        self.columns = columns
        self.storage = storage
    }

    /// A copy of row `index`.
    public func row(_ index: Int) -> [Float] {
        Array(storage[index * columns..<(index + 1) * columns])
    }

    /// The rows `indices`, in that order, as a new matrix.
    public func gatherRows(_ indices: [Int]) -> Matrix {
        var result = Matrix(rows: indices.count, columns: columns)
        for (target, source) in indices.enumerated() {
            result.storage[target * columns..<(target + 1) * columns] = storage[source * columns..<(source + 1) * columns]
        }
        return result
    }
}
