import Foundation

/// A JSON value with its object keys in order: the router parses requests into it (so that a
/// parameter of the wrong type gets an error that names it) and writes responses from it (so
/// that `null` fields are written, as OpenAI's responses have them).
///
/// Numbers: integers that fit Int are `.int`, larger ones up to UInt64.max `.uint`, anything
/// else `.double`; a number too large for a Double (1e400) is `.double(.infinity)`, so that the
/// parameter it was given for can refuse it by name.
public indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.uint(x), .uint(y)): return x == y
        case let (.double(x), .double(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// The value of `key` in an object (nil when absent or not an object).
    public subscript(key: String) -> JSONValue? {
        guard case let .object(fields) = self else { return nil }
        return fields.last(where: { $0.0 == key })?.1
    }

    public var isNull: Bool { if case .null = self { return true } else { return false } }

    /// Compact JSON text.
    public var serialized: String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case let .bool(b): out += b ? "true" : "false"
        case let .int(i): out += String(i)
        case let .uint(u): out += String(u)
        case let .double(d):
            if d.isFinite {
                if d == d.rounded(), abs(d) < 1e15 { out += String(Int(d)) + ".0" } else { out += "\(d)" }
            } else {
                out += d > 0 ? "1e308" : (d < 0 ? "-1e308" : "null")   // -inf logprobs stay numbers
            }
        case let .string(s): JSONValue.writeString(s, to: &out)
        case let .array(items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.write(to: &out)
            }
            out += "]"
        case let .object(fields):
            out += "{"
            for (i, (key, value)) in fields.enumerated() {
                if i > 0 { out += "," }
                JSONValue.writeString(key, to: &out)
                out += ":"
                value.write(to: &out)
            }
            out += "}"
        }
    }

    static func writeString(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// Why `parse(_:maxDepth:)` refused a text.
    public enum ParseError: Error, Equatable {
        /// Arrays and objects nest deeper than the limit.
        case tooDeep(limit: Int)
        /// Not JSON (or not UTF-8).
        case invalid
    }

    /// Parses JSON text; nil when it is not valid JSON or nests deeper than `RequestLimits.maxJSONDepth`.
    public static func parse(_ data: Data) -> JSONValue? {
        try? parse(data, maxDepth: RequestLimits.maxJSONDepth)
    }

    /// Parses JSON text, refusing nesting deeper than `maxDepth` (scanned before decoding, so
    /// that the recursive decoder never sees it), invalid JSON and invalid UTF-8.
    public static func parse(_ data: Data, maxDepth: Int) throws(ParseError) -> JSONValue {
        if data.withUnsafeBytes({ JSONDepthScan.exceeds($0, limit: maxDepth) }) { throw .tooDeep(limit: maxDepth) }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw .invalid
        }
    }
}

extension JSONValue: Decodable {
    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { return nil }
    }

    public init(from decoder: Decoder) throws {
        if let object = try? decoder.container(keyedBy: Key.self) {
            self = .object(try object.allKeys.map { ($0.stringValue, try object.decode(JSONValue.self, forKey: $0)) }
                .sorted { $0.0 < $1.0 })
            return
        }
        if var array = try? decoder.unkeyedContainer() {
            var items: [JSONValue] = []
            while !array.isAtEnd { items.append(try array.decode(JSONValue.self)) }
            self = .array(items)
            return
        }
        let value = try decoder.singleValueContainer()
        if value.decodeNil() { self = .null }
        else if let b = try? value.decode(Bool.self) { self = .bool(b) }
        else if let i = try? value.decode(Int.self) { self = .int(i) }
        else if let u = try? value.decode(UInt64.self) { self = .uint(u) }
        else if let d = try? value.decode(Double.self) { self = .double(d) }
        else if let s = try? value.decode(String.self) { self = .string(s) }
        else {
            // Only a number gets here: one beyond Double's range (JSON has no infinity, 1e400
            // does not fit). Keep it as infinite, for the parameter to refuse by name.
            self = .double(.infinity)
        }
    }
}
