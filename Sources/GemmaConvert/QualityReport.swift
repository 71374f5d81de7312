import Foundation
import GemmaModel

/// How much a converted model's next-token distributions differ from the original's, over
/// every position of a set of prompts: mean KL divergence KL(original || converted), top-1
/// agreement, cosine similarity of the logit vectors, and the largest logit difference.
public struct QualityReport: Sendable {
    public var positions = 0
    public var meanKL = 0.0
    public var maxKL = 0.0
    public var top1Agreement = 0.0
    public var meanCosine = 0.0
    public var minCosine = 1.0
    public var maxAbsLogitDelta = 0.0

    /// Prompts used when none are given.
    public static let defaultPrompts = [
        "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.",
        "HAMLET:\nTo be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer",
        "The quick brown fox jumps over the lazy dog. 12345 + 678 = 13023.",
        "KING HENRY V:\nOnce more unto the breach, dear friends, once more;\nOr close the wall up with our English dead.",
    ]

    /// Runs both models over each prompt (tokenized with the reference's tokenizer, BOS first,
    /// at most `maxTokens` tokens) and compares the logits at every position.
    public static func compare(reference: LoadedModel, candidate: LoadedModel, prompts: [String],
                               maxTokens: Int) throws -> QualityReport {
        let original = try reference.transformer()
        let converted = try candidate.transformer()
        guard original.config.vocabularySize == converted.config.vocabularySize else {
            throw ForwardError.wrongInput("vocabularies differ: \(original.config.vocabularySize) vs \(converted.config.vocabularySize)")
        }
        var report = QualityReport()
        var klSum = 0.0, cosineSum = 0.0, agreements = 0
        for prompt in prompts {
            let tokens = Array(reference.tokenizer.encode(prompt, addBOS: true).prefix(max(1, maxTokens)))
            let a = try original.forward(tokens: tokens, startPosition: 0, cache: original.makeCache(), allPositions: true)
            let b = try converted.forward(tokens: tokens, startPosition: 0, cache: converted.makeCache(), allPositions: true)
            for p in 0..<tokens.count {
                let x = a.row(p), y = b.row(p)
                let kl = klDivergence(x, y)
                klSum += kl
                report.maxKL = max(report.maxKL, kl)
                if argmax(x) == argmax(y) { agreements += 1 }  // lowest id among equal maxima, as greedy picks
                let c = cosine(x, y)
                cosineSum += c
                report.minCosine = min(report.minCosine, c)
                for (u, v) in zip(x, y) { report.maxAbsLogitDelta = max(report.maxAbsLogitDelta, Double(abs(u - v))) }
                report.positions += 1
            }
        }
        let n = Double(max(1, report.positions))
        report.meanKL = klSum / n
        report.meanCosine = cosineSum / n
        report.top1Agreement = Double(agreements) / n
        return report
    }

    /// KL(P || Q) of the softmax distributions of two logit vectors, in nats.
    static func klDivergence(_ p: [Float], _ q: [Float]) -> Double {
        let lp = logSoftmax(p), lq = logSoftmax(q)
        var sum = 0.0
        for i in 0..<p.count { sum += exp(lp[i]) * (lp[i] - lq[i]) }
        return max(0, sum)
    }

    static func logSoftmax(_ x: [Float]) -> [Double] {
        let logNormalizer = x.withUnsafeBufferPointer { LogSoftmax($0).logNormalizer }
        return x.map { Double($0) - logNormalizer }
    }

    static func cosine(_ x: [Float], _ y: [Float]) -> Double {
        var dot = 0.0, xx = 0.0, yy = 0.0
        for (u, v) in zip(x, y) {
            dot += Double(u) * Double(v)
            xx += Double(u) * Double(u)
            yy += Double(v) * Double(v)
        }
        return dot / max((xx * yy).squareRoot(), .leastNonzeroMagnitude)
    }

    static func argmax(_ x: [Float]) -> Int {
        x.withUnsafeBufferPointer { Sampler.argmax($0) }
    }

    /// The report as JSON-ready values.
    public var dictionary: [String: Any] {
        ["positions": positions, "mean_kl": meanKL, "max_kl": maxKL, "top1_agreement": top1Agreement,
         "mean_cosine": meanCosine, "min_cosine": minCosine, "max_abs_logit_delta": maxAbsLogitDelta]
    }

    /// A few readable lines.
    public var summary: String {
        String(format: """
            positions compared:   %d
            mean KL divergence:   %.6f nats (max %.6f)
            top-1 agreement:      %.2f%%
            cosine similarity:    mean %.6f, min %.6f
            max |delta logit|:    %.4f
            """, positions, meanKL, maxKL, top1Agreement * 100, meanCosine, minCosine, maxAbsLogitDelta)
    }
}
