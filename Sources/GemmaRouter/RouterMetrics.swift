import Foundation
import GemmaCluster

/// The router's Prometheus metrics, named like vLLM's (`vllm:` becomes `gemma:`), each labelled
/// with `model_name`: latency histograms (time to first token, inter-token latency, end-to-end),
/// token and request counters, and, sampled when scraped, running and waiting requests and the
/// KV cache use of every stage replica.
///
/// Safe to use from any task; observations take a lock for a few additions.
public final class RouterMetrics: @unchecked Sendable {
    /// A cumulative Prometheus histogram.
    struct Histogram {
        let bounds: [Double]
        var counts: [UInt64]
        var sum = 0.0
        var count: UInt64 = 0

        init(bounds: [Double]) {
            self.bounds = bounds
            counts = Array(repeating: 0, count: bounds.count)
        }

        mutating func observe(_ value: Double) {
            for (i, bound) in bounds.enumerated() where value <= bound { counts[i] += 1 }
            sum += value
            count += 1
        }
    }

    /// vLLM's buckets.
    static let firstTokenBounds = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                                   7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
    static let interTokenBounds = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                                   10.0, 20.0, 40.0, 80.0]
    static let requestBounds = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                                120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0]

    /// The KV cache of one stage replica when scraped (nil: it did not answer).
    public struct StageSample: Sendable {
        public var stage: Int
        public var replica: Int
        public var usedBytes: UInt64
        public var capacityBytes: UInt64
        public var up: Bool

        public init(stage: Int, replica: Int, usedBytes: UInt64, capacityBytes: UInt64, up: Bool) {
            self.stage = stage
            self.replica = replica
            self.usedBytes = usedBytes
            self.capacityBytes = capacityBytes
            self.up = up
        }
    }

    public let modelName: String
    private let lock = NSLock()
    private var firstToken = Histogram(bounds: RouterMetrics.firstTokenBounds)
    private var interToken = Histogram(bounds: RouterMetrics.interTokenBounds)
    private var endToEnd = Histogram(bounds: RouterMetrics.requestBounds)
    private var promptTokens: UInt64 = 0
    private var generationTokens: UInt64 = 0
    private var successes: [ClusterFinishReason: UInt64] = [:]
    private var failures: UInt64 = 0

    public init(modelName: String) {
        self.modelName = modelName
    }

    /// Times one request: its first token, the gaps between tokens, and its end.
    public final class RequestClock: @unchecked Sendable {
        let metrics: RouterMetrics
        let arrival = ContinuousClock.now
        var lastToken: ContinuousClock.Instant?
        var done = false

        init(metrics: RouterMetrics) {
            self.metrics = metrics
        }

        /// Records what the completion reported.
        public func record(_ event: GenerationEvent) {
            let now = ContinuousClock.now
            switch event {
            case let .delta(_, tokens):
                guard !tokens.isEmpty else { return }
                metrics.withLock {
                    if let last = lastToken {
                        let gap = (now - last).seconds / Double(tokens.count)
                        for _ in tokens { metrics.interToken.observe(gap) }
                    } else {
                        metrics.firstToken.observe((now - arrival).seconds)
                    }
                }
                lastToken = now
            case let .finished(reason, promptTokens, completionTokens):
                guard !done else { return }
                done = true
                metrics.withLock {
                    // The token that ended the completion (a stop id) comes with no delta.
                    if lastToken == nil { metrics.firstToken.observe((now - arrival).seconds) }
                    metrics.endToEnd.observe((now - arrival).seconds)
                    metrics.promptTokens += UInt64(promptTokens)
                    metrics.generationTokens += UInt64(completionTokens)
                    metrics.successes[reason, default: 0] += 1
                }
            }
        }

        /// The completion failed after it was accepted.
        public func fail() {
            guard !done else { return }
            done = true
            metrics.withLock { metrics.failures += 1 }
        }
    }

    /// A clock for a request that arrives now.
    public func startRequest() -> RequestClock { RequestClock(metrics: self) }

    private func withLock<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    /// The exposition text (Prometheus text format 0.0.4).
    public func render(running: Int, waiting: Int, kvReserved: Int, kvCapacity: Int?, stages: [StageSample]) -> String {
        var out = ""
        let model = "model_name=\"\(Self.escape(modelName))\""
        func header(_ name: String, _ type: String, _ help: String) {
            out += "# HELP gemma:\(name) \(help)\n# TYPE gemma:\(name) \(type)\n"
        }
        func sample(_ name: String, _ labels: String, _ value: Double) {
            out += "gemma:\(name){\(labels)} \(Self.format(value))\n"
        }
        func histogram(_ name: String, _ help: String, _ h: Histogram) {
            header(name, "histogram", help)
            for (bound, count) in zip(h.bounds, h.counts) {
                sample(name + "_bucket", "\(model),le=\"\(Self.format(bound))\"", Double(count))
            }
            sample(name + "_bucket", "\(model),le=\"+Inf\"", Double(h.count))
            sample(name + "_sum", model, h.sum)
            sample(name + "_count", model, Double(h.count))
        }
        header("num_requests_running", "gauge", "Requests whose sequences run in the pipeline.")
        sample("num_requests_running", model, Double(running))
        header("num_requests_waiting", "gauge", "Requests waiting for admission (KV cache or batch room).")
        sample("num_requests_waiting", model, Double(waiting))
        header("kv_cache_usage_perc", "gauge", "Share of each stage replica's KV cache in use (1 = full).")
        for s in stages where s.up {
            sample("kv_cache_usage_perc", "\(model),stage=\"\(s.stage)\",replica=\"\(s.replica)\"",
                   s.capacityBytes == 0 ? 0 : Double(s.usedBytes) / Double(s.capacityBytes))
        }
        header("kv_cache_reserved_perc", "gauge", "Share of the smallest stage's KV cache the running requests reserve.")
        sample("kv_cache_reserved_perc", model, kvCapacity.map { $0 == 0 ? 0 : Double(kvReserved) / Double($0) } ?? 0)
        header("stage_up", "gauge", "1 when the stage replica answered Info at this scrape.")
        for s in stages {
            sample("stage_up", "\(model),stage=\"\(s.stage)\",replica=\"\(s.replica)\"", s.up ? 1 : 0)
        }
        lock.lock()
        let (first, inter, e2e) = (firstToken, interToken, endToEnd)
        let (prompt, generation, ok, failed) = (promptTokens, generationTokens, successes, failures)
        lock.unlock()
        header("prompt_tokens", "counter", "Prompt tokens of finished requests.")
        sample("prompt_tokens_total", model, Double(prompt))
        header("generation_tokens", "counter", "Generated tokens of finished requests.")
        sample("generation_tokens_total", model, Double(generation))
        header("request_success", "counter", "Finished requests, by finish reason.")
        for reason in [ClusterFinishReason.stop, .length] {
            sample("request_success_total", "\(model),finished_reason=\"\(reason.rawValue)\"", Double(ok[reason] ?? 0))
        }
        header("request_failure", "counter", "Accepted requests that ended with an error (pipeline down, shutdown).")
        sample("request_failure_total", model, Double(failed))
        histogram("time_to_first_token_seconds", "Time from the request's arrival to its first token.", first)
        histogram("inter_token_latency_seconds", "Time between consecutive tokens of a request.", inter)
        histogram("e2e_request_latency_seconds", "Time from the request's arrival to its last token.", e2e)
        return out
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}

extension Duration {
    /// The duration in seconds.
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) * 1e-18
    }
}
