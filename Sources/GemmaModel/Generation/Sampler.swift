import Foundation

/// How the next token is chosen. `temperature == 0` means greedy (argmax, lowest id on ties).
public struct SamplingParameters: Sendable, Equatable, Codable {
    public var temperature: Float
    /// Keep only the k most likely tokens; 0 keeps all.
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability reaches `topP`; 1 keeps all.
    public var topP: Float
    public var seed: UInt64

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    public static let greedy = SamplingParameters()

    /// Checks ranges; the message names the parameter.
    public func validate() throws {
        guard temperature.isFinite, temperature >= 0 else { throw SamplingError.invalid("temperature must be >= 0, got \(temperature)") }
        guard topK >= 0 else { throw SamplingError.invalid("top_k must be >= 0, got \(topK)") }
        guard topP.isFinite, topP > 0, topP <= 1 else { throw SamplingError.invalid("top_p must be in (0, 1], got \(topP)") }
    }
}

/// A sampling parameter out of range.
public enum SamplingError: Error, CustomStringConvertible, Equatable {
    case invalid(String)
    public var description: String {
        switch self { case let .invalid(message): return message }
    }
}

/// Chooses tokens from logits. The random draw for a token depends only on the seed and the
/// token's position in the sequence, so a sequence samples the same text whether it runs alone
/// or in a batch, and after a replay from its history.
public enum Sampler {
    /// A uniform draw in [0, 1) determined by (seed, position): SplitMix64 over both.
    public static func uniform(seed: UInt64, position: Int) -> Double {
        var z = seed &+ 0x9E37_79B9_7F4A_7C15 &* (UInt64(truncatingIfNeeded: position) &+ 1)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z = z ^ (z >> 31)
        return Double(z >> 11) * 0x1.0p-53
    }

    /// The index of the largest logit (the lowest index among equals).
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        var bestValue = -Float.infinity
        for i in 0..<logits.count where logits[i] > bestValue {
            best = i
            bestValue = logits[i]
        }
        return best
    }

    /// Samples the token at `position` from `logits`: temperature, then top-k, then top-p over
    /// the renormalised distribution, then one draw (inverse CDF of the uniform draw for
    /// `(seed, position)`: over the kept tokens from the most likely down when the distribution
    /// was truncated, over every token in id order when it was not).
    ///
    /// Nothing sorts the whole vocabulary unless top-p needs most of it: top-k keeps the k best
    /// in a bounded heap, top-p grows the sorted prefix until it holds the probability mass, and
    /// an untruncated draw is one pass (this runs on the last stage for every sequence and
    /// every step, over 256,000 logits).
    public static func sample(_ logits: UnsafeBufferPointer<Float>, parameters: SamplingParameters,
                              position: Int) -> Int {
        if parameters.temperature == 0 || parameters.topK == 1 || logits.count == 1 { return argmax(logits) }
        let inverseTemperature = 1 / Double(parameters.temperature)
        let maximum = Double(logits[argmax(logits)])
        func weight(_ index: Int) -> Double { exp((Double(logits[index]) - maximum) * inverseTemperature) }
        let draw = uniform(seed: parameters.seed, position: position)

        let k = parameters.topK > 0 ? min(parameters.topK, logits.count) : logits.count
        if k == logits.count && parameters.topP >= 1 {
            let weights = (0 ..< logits.count).map(weight)
            let target = draw * weights.reduce(0, +)
            var cumulative = 0.0
            for (index, w) in weights.enumerated() {
                cumulative += w
                if target < cumulative { return index }
            }
            return logits.count - 1
        }

        // The kept candidates, most likely first (ties by id).
        var candidates = k < logits.count ? RankedLogits.best(k, of: logits) : []
        if parameters.topP < 1 {
            // top-p: the smallest prefix of the ranking (within the top k) that holds top_p of
            // their mass. Over the whole vocabulary the prefix examined grows by 8x until it does.
            let mass = k < logits.count ? candidates.reduce(0.0) { $0 + weight($1) }
                                        : (0 ..< logits.count).reduce(0.0) { $0 + weight($1) }
            var examined = k < logits.count ? k : min(k, 512)
            while true {
                if k == logits.count { candidates = RankedLogits.best(examined, of: logits) }
                var cumulative = 0.0
                let keep = candidates.firstIndex { index in
                    cumulative += weight(index)
                    return cumulative / mass >= Double(parameters.topP)
                }
                if let keep {
                    candidates.removeSubrange((keep + 1)...)
                    break
                }
                if examined == k { break }  // rounding: the whole mass fell just short of top_p
                examined = min(k, examined * 8)
            }
        }
        let weights = candidates.map(weight)
        let target = draw * weights.reduce(0, +)
        var cumulative = 0.0
        for (i, w) in weights.enumerated() {
            cumulative += w
            if target < cumulative { return candidates[i] }
        }
        return candidates[weights.count - 1]
    }
}

/// The ranking of logits the sampler truncates by: larger logit first, lower id first among
/// equals. Each logit and its id are one 64-bit key whose ascending order is that ranking.
enum RankedLogits {
    static func key(_ logits: UnsafeBufferPointer<Float>, _ index: Int) -> UInt64 {
        let value = logits[index]
        let bits = (value == 0 ? 0 : value).bitPattern  // -0 ranks as +0
        // Order-preserving map of the float to an unsigned integer, then complemented so that
        // larger logits come first.
        let ascending = bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
        return UInt64(~ascending) << 32 | UInt64(index)
    }

    /// The ids of the `count` highest-ranked logits, in rank order. A bounded max-heap of keys:
    /// one comparison for most logits once it is full.
    static func best(_ count: Int, of logits: UnsafeBufferPointer<Float>) -> [Int] {
        let count = min(count, logits.count)
        guard count > 0 else { return [] }
        if count == logits.count {
            return (0 ..< logits.count).map { key(logits, $0) }.sorted().map { Int(truncatingIfNeeded: $0 & 0xFFFF_FFFF) }
        }
        var heap: [UInt64] = []  // max-heap: heap[0] is the worst key kept
        heap.reserveCapacity(count)
        for index in 0 ..< logits.count {
            let k = key(logits, index)
            if heap.count < count {
                heap.append(k)
                var child = heap.count - 1
                while child > 0 {
                    let parent = (child - 1) / 2
                    guard heap[parent] < heap[child] else { break }
                    heap.swapAt(parent, child)
                    child = parent
                }
            } else if k < heap[0] {
                heap[0] = k
                var parent = 0
                while true {
                    let left = 2 * parent + 1, right = left + 1
                    var largest = parent
                    if left < count, heap[left] > heap[largest] { largest = left }
                    if right < count, heap[right] > heap[largest] { largest = right }
                    if largest == parent { break }
                    heap.swapAt(parent, largest)
                    parent = largest
                }
            }
        }
        return heap.sorted().map { Int(truncatingIfNeeded: $0 & 0xFFFF_FFFF) }
    }
}
