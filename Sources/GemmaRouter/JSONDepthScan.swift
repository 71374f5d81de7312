/// A byte-level pass over JSON text that finds how deeply its arrays and objects nest, so that
/// input nested past `RequestLimits.maxJSONDepth` is refused before the recursive decoder sees it.
enum JSONDepthScan {
    /// True when `bytes` opens more than `limit` arrays/objects at once. Brackets inside strings
    /// (escapes included) do not count; the scan stops at the first level past the limit.
    /// Malformed text (unbalanced, unterminated strings) is left to the decoder to refuse.
    static func exceeds<Bytes: Sequence<UInt8>>(_ bytes: Bytes, limit: Int) -> Bool {
        var depth = 0
        var inString = false
        var escaped = false
        for byte in bytes {
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""):
                inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1   // cannot overflow: the scan stops at limit + 1
                if depth > limit { return true }
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                if depth > 0 { depth -= 1 }
            default:
                break
            }
        }
        return false
    }
}
