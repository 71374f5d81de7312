import CNNG

/// A failed nng call: which call, and nng's error number and text.
public struct NNGError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The nng function (and its argument, such as a URL) that failed.
    public let operation: String
    /// nng's error number (`NNG_ETIMEDOUT`, `NNG_ECLOSED`, ...).
    public let code: Int32

    /// Wraps nng's result `code` of `operation`.
    public init(operation: String, code: Int32) {
        self.operation = operation
        self.code = code
    }

    /// nng's text for the error, its number and the call.
    public var description: String {
        "\(operation): \(String(cString: nng_strerror(code))) (nng error \(code))"
    }

    static let timedOut = Int32(NNG_ETIMEDOUT.rawValue)
    static let closed = Int32(NNG_ECLOSED.rawValue)
    static let cancelled = Int32(NNG_ECANCELED.rawValue)
    static let connectionReset = Int32(NNG_ECONNRESET.rawValue)
    static let connectionRefused = Int32(NNG_ECONNREFUSED.rawValue)
    static let messageTooLarge = Int32(NNG_EMSGSIZE.rawValue)
}

/// Throws `NNGError` unless nng's result `code` is 0.
@inline(__always)
func nngCheck(_ code: Int32, _ operation: @autoclosure () -> String) throws(NNGError) {
    if code != 0 { throw NNGError(operation: operation(), code: code) }
}

/// nng's duration (milliseconds) for a Swift duration: at least 1 ms, so that a short
/// positive wait never becomes "now", and at most about 24 days.
func nngMilliseconds(_ duration: Duration) -> nng_duration {
    let (seconds, attoseconds) = duration.components
    if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 1 }
    let milliseconds = seconds.multipliedReportingOverflow(by: 1000)
    guard !milliseconds.overflow else { return nng_duration(Int32.max) }
    let total = milliseconds.partialValue + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    return nng_duration(max(1, min(total, Int64(Int32.max))))
}

/// nng's "wait forever".
let nngInfinite = nng_duration(NNG_DURATION_INFINITE)
