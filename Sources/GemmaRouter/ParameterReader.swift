/// Typed, range-checked access to the fields of a request body; `null` counts as absent. Every
/// refusal is a 400 that names the field. Values repeated in messages are numbers (short) or
/// bounded by `boundedForLog`.
struct ParameterReader {
    let json: JSONValue

    func value(_ key: String) -> JSONValue? {
        guard let v = json[key], !v.isNull else { return nil }
        return v
    }

    /// A finite number within `range`.
    func number(_ key: String, in range: ClosedRange<Double>) throws -> Double? {
        let d: Double
        switch value(key) {
        case nil: return nil
        case let .int(i)?: d = Double(i)
        case let .uint(u)?: d = Double(u)
        case let .double(v)?: d = v
        default: throw OpenAIError.invalid(key, "\(key) must be a number.")
        }
        guard d.isFinite else { throw OpenAIError.invalid(key, "\(key) is out of range: the number is too large.") }
        guard range.contains(d) else {
            throw OpenAIError.invalid(key, "\(key) must be between \(range.lowerBound) and \(range.upperBound), got \(d).")
        }
        return d
    }

    /// An integer within `range`; integral numbers written with a fraction or exponent (2.0,
    /// 1e2) count as integers, others (0.5) and integers beyond Int64 are refused.
    func int(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let v = value(key) else { return nil }
        let i = try Self.integer(v, name: key)
        guard range.contains(i) else {
            throw OpenAIError.invalid(key, "\(key) must be between \(range.lowerBound) and \(range.upperBound), got \(i).")
        }
        return i
    }

    /// The integer in `value`, or a 400 naming `name`.
    static func integer(_ value: JSONValue, name: String) throws -> Int {
        switch value {
        case let .int(i):
            return i
        case let .double(d):
            if let i = Int(exactly: d) { return i }
            if d.isFinite, d != d.rounded() { throw OpenAIError.invalid(name, "\(name) must be an integer, got \(d).") }
            throw OpenAIError.invalid(name, "\(name) is out of range: the integer does not fit 64 bits.")
        case .uint:
            throw OpenAIError.invalid(name, "\(name) is out of range: the integer does not fit a signed 64-bit integer.")
        default:
            throw OpenAIError.invalid(name, "\(name) must be an integer.")
        }
    }

    /// A seed: any integer from -2^63 to 2^64-1 (negative ones by their two's complement bits).
    func seed(_ key: String) throws -> UInt64? {
        switch value(key) {
        case nil: return nil
        case let .int(i)?: return UInt64(bitPattern: Int64(i))
        case let .uint(u)?: return u
        case let .double(d)? where Int64(exactly: d) != nil: return UInt64(bitPattern: Int64(exactly: d)!)
        case let .double(d)? where UInt64(exactly: d) != nil: return UInt64(exactly: d)!
        default:
            throw OpenAIError.invalid(key, "\(key) must be an integer between -9223372036854775808 and 18446744073709551615.")
        }
    }

    func bool(_ key: String) throws -> Bool? {
        switch value(key) {
        case nil: return nil
        case let .bool(b)?: return b
        default: throw OpenAIError.invalid(key, "\(key) must be a boolean.")
        }
    }

    func string(_ key: String) throws -> String? {
        switch value(key) {
        case nil: return nil
        case let .string(s)?: return s
        default: throw OpenAIError.invalid(key, "\(key) must be a string.")
        }
    }

    /// `stop`: a string or an array of strings, at most `RequestLimits.maxStopSequences` of at
    /// most `RequestLimits.maxStopBytes` bytes each; empty strings are dropped.
    func stop() throws -> [String] {
        let wrongType = OpenAIError.invalid("stop", "stop must be a string or an array of strings.")
        let strings: [String]
        switch value("stop") {
        case nil: return []
        case let .string(s)?: strings = [s]
        case let .array(items)?:
            guard items.count <= RequestLimits.maxStopSequences else {
                throw OpenAIError.invalid("stop", "stop takes at most \(RequestLimits.maxStopSequences) sequences, got \(items.count).")
            }
            strings = try items.map { guard case let .string(s) = $0 else { throw wrongType }; return s }
        default: throw wrongType
        }
        if let long = strings.first(where: { $0.utf8.count > RequestLimits.maxStopBytes }) {
            throw OpenAIError.invalid("stop", "Each stop sequence must be at most \(RequestLimits.maxStopBytes) bytes, got one of \(long.utf8.count) bytes.")
        }
        return strings.filter { !$0.isEmpty }
    }
}
