import CGemmaKernels
import Dispatch
import Foundation

/// Throughput figures of one model on this machine: prompt processing, decoding at several
/// batch sizes, and the memory read bandwidth measured in the same run. Every figure is the
/// median of its repetitions after a warm-up.
public struct EngineBenchmark {
    public let model: GemmaTransformer
    public var promptTokens = 64
    public var generatedTokens = 32
    public var batchSizes = [1, 4, 8]
    public var repetitions = 3
    /// Positions already in each sequence's cache when decoding is timed (filled with
    /// pseudo-random keys and values; 8 computed prompt tokens when 8 or fewer).
    public var context = 8

    /// One batch size's decode figures.
    public struct DecodeFigure: Sendable {
        public let batch: Int
        /// Tokens per second of one stream.
        public let perStream: Double
        /// Tokens per second of all streams together.
        public let aggregate: Double
        /// Share of a step's time spent in attention.
        public let attentionShare: Double
    }

    /// Everything one run measures.
    public struct Result: Sendable {
        public var promptTokensPerSecond = 0.0
        public var decode: [DecodeFigure] = []
        /// Weight bytes read per decode step (each weight once, the tied embedding whole).
        public var bytesPerToken = 0
        /// Memory read bandwidth in bytes per second, best of several passes.
        public var bandwidth = 0.0
        /// Share of the bandwidth single-stream decode uses.
        public var bandwidthShare: Double {
            guard let single = decode.first(where: { $0.batch == 1 }), bandwidth > 0 else { return 0 }
            return single.perStream * Double(bytesPerToken) / bandwidth
        }
    }

    public init(model: GemmaTransformer) {
        self.model = model
    }

    /// Sets the threads of every kernel (OpenBLAS runs single-threaded inside our pool).
    public static func setThreads(_ threads: Int) {
        QuantizedWeights.threadCount = threads
    }

    func randomTokens(_ count: Int, seed: UInt64) -> [Int32] {
        var state = seed
        let vocabulary = UInt64(model.config.vocabularySize - 10)
        return [2] + (1..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int32(10 + (state >> 33) % vocabulary)
        }
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    static func time(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    /// Prompt tokens per second of one prefill of `promptTokens`.
    public func measurePrompt() throws -> Double {
        let tokens = randomTokens(promptTokens, seed: 1)
        _ = try model.forward(tokens: tokens, startPosition: 0, cache: model.makeCache())  // warm-up
        let times = try (0..<repetitions).map { _ in
            try Self.time { _ = try model.forward(tokens: tokens, startPosition: 0, cache: model.makeCache()) }
        }
        return Double(promptTokens) / Self.median(times)
    }

    /// Decode steps of `batch` sequences at once: each step one token per sequence, weights
    /// read once for the whole batch.
    public func measureDecode(batch: Int) throws -> DecodeFigure {
        var stepTimes: [Double] = []
        var shares: [Double] = []
        let first = max(8, context)
        for repetition in 0...repetitions {  // the first is the warm-up
            let caches = (0..<batch).map { _ in model.makeCache(reserving: first + generatedTokens) }
            var tokens: [Int32] = []
            for (i, cache) in caches.enumerated() {
                let prompt = randomTokens(8, seed: UInt64(100 + i))
                if first > 8 {
                    cache.fillForBenchmark(positions: first, seed: UInt64(100 + i))
                } else {
                    _ = try model.forward(tokens: prompt, startPosition: 0, cache: cache)
                }
                tokens.append(prompt.last!)
            }
            var times: [Double] = []
            AttentionClock.start()
            for step in 0..<generatedTokens {
                times.append(try Self.time {
                    var hidden = try model.embed(tokens)
                    try model.forwardLayers(&hidden, segments: caches.map { BatchSegment(cache: $0, startPosition: first + step, count: 1) })
                    let logits = try model.logits(hidden, rows: Array(0..<batch))
                    tokens = (0..<batch).map { row in
                        logits.storage.withUnsafeBufferPointer {
                            Int32(Sampler.argmax(UnsafeBufferPointer(rebasing: $0[row * logits.columns..<(row + 1) * logits.columns])))
                        }
                    }
                })
            }
            let attention = AttentionClock.stop()
            if repetition > 0 {
                stepTimes.append(Self.median(times))
                shares.append(attention / times.reduce(0, +))
            }
        }
        let step = Self.median(stepTimes)
        return DecodeFigure(batch: batch, perStream: 1 / step, aggregate: Double(batch) / step,
                            attentionShare: Self.median(shares))
    }

    /// Read bandwidth over a 1 GiB buffer with every kernel thread (the kernels' own pool),
    /// best of 8 passes. The buffer is allocated as the packed weights are (huge pages where
    /// the kernel allows), so the probe reads memory at least as well as decoding can.
    public static func measureBandwidth(threads: Int) -> Double {
        let bytes = 1 << 30
        let memory = PackedBuffer(byteCount: bytes)
        let buffer = memory.pointer
        defer { withExtendedLifetime(memory) {} }
        memset(buffer, 1, bytes)
        var best = 0.0
        for _ in 0..<8 {
            let seconds = time { gemma_read_memory_parallel(buffer, Int64(bytes), Int32(threads)) }
            best = max(best, Double(bytes / threads / 128 * 128 * threads) / seconds)
        }
        return best
    }

    public func run(threads: Int, progress: (String) -> Void = { _ in }) throws -> Result {
        var result = Result()
        result.bytesPerToken = model.weightBytes
        progress("memory bandwidth")
        result.bandwidth = Self.measureBandwidth(threads: threads)
        progress("prompt of \(promptTokens) tokens")
        result.promptTokensPerSecond = try measurePrompt()
        for batch in batchSizes {
            progress("decode, batch \(batch)")
            result.decode.append(try measureDecode(batch: batch))
        }
        return result
    }
}
