/// The keys and values of one sequence for the layers a model (or pipeline stage) holds.
/// Position p of layer l lives at `keys[l][p * kvWidth ..< (p + 1) * kvWidth]`. Writing the
/// same position twice writes the same values, so a retried forward step is harmless.
public final class SequenceKVCache: @unchecked Sendable {
    public let layerCount: Int
    public let kvWidth: Int
    /// Positions that hold valid keys and values: 0 ..< length.
    public internal(set) var length = 0
    /// Positions the buffers can hold before they grow.
    public private(set) var capacity = 0
    var keys: [[Float]]
    var values: [[Float]]

    public init(layerCount: Int, kvWidth: Int, reserving positions: Int = 0) {
        self.layerCount = layerCount
        self.kvWidth = kvWidth
        keys = Array(repeating: [], count: layerCount)
        values = Array(repeating: [], count: layerCount)
        reserve(positions)
    }

    /// Bytes held by the buffers.
    public var byteCount: Int { 2 * layerCount * capacity * kvWidth * MemoryLayout<Float>.size }

    /// Bytes that holding `positions` positions takes.
    public static func bytes(positions: Int, layerCount: Int, kvWidth: Int) -> Int {
        2 * layerCount * positions * kvWidth * MemoryLayout<Float>.size
    }

    /// Makes room for positions 0 ..< `positions`, growing geometrically.
    public func reserve(_ positions: Int) {
        guard positions > capacity else { return }
        let newCapacity = max(positions, capacity * 2, 16)
        for l in 0..<layerCount {
            keys[l].append(contentsOf: repeatElement(0, count: (newCapacity - capacity) * kvWidth))
            values[l].append(contentsOf: repeatElement(0, count: (newCapacity - capacity) * kvWidth))
        }
        capacity = newCapacity
    }

    /// Fills positions 0 ..< `positions` of every layer with pseudo-random keys and values and
    /// marks them valid: a long context for benchmarks without computing its prefill.
    public func fillForBenchmark(positions: Int, seed: UInt64) {
        reserve(positions)
        var state = seed
        for l in 0..<layerCount {
            for i in 0..<positions * kvWidth {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                keys[l][i] = Float(Int64(bitPattern: state) >> 40) / Float(1 << 23)
                state = state &* 6364136223846793005 &+ 1442695040888963407
                values[l][i] = Float(Int64(bitPattern: state) >> 40) / Float(1 << 23)
            }
        }
        length = positions
    }

    /// Forgets positions from `position` on (they are recomputed when needed).
    public func truncate(to position: Int) {
        length = min(length, max(0, position))
    }
}

/// A run of consecutive tokens of one sequence inside a forward batch: its rows are
/// `count` consecutive rows of the batch's activations, at positions `startPosition ..<
/// startPosition + count`.
public struct BatchSegment: @unchecked Sendable {
    public let cache: SequenceKVCache
    public let startPosition: Int
    public let count: Int

    public init(cache: SequenceKVCache, startPosition: Int, count: Int) {
        self.cache = cache
        self.startPosition = startPosition
        self.count = count
    }
}
