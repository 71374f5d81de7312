/// The type tag of a GGUF metadata value (`enum gguf_type` in `ggml/include/gguf.h`).
public enum GGUFValueType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case uint8 = 0
    case int8 = 1
    case uint16 = 2
    case int16 = 3
    case uint32 = 4
    case int32 = 5
    case float32 = 6
    case bool = 7
    case string = 8
    case array = 9
    case uint64 = 10
    case int64 = 11
    case float64 = 12

    /// The short name gguf.cpp uses ("u8", "i32", "f32", "bool", "str", "arr", …).
    public var description: String {
        switch self {
        case .uint8: return "u8"
        case .int8: return "i8"
        case .uint16: return "u16"
        case .int16: return "i16"
        case .uint32: return "u32"
        case .int32: return "i32"
        case .float32: return "f32"
        case .bool: return "bool"
        case .string: return "str"
        case .array: return "arr"
        case .uint64: return "u64"
        case .int64: return "i64"
        case .float64: return "f64"
        }
    }

    /// Bytes of one value of a fixed-size type; nil for strings and arrays.
    public var fixedSize: Int? {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64: return 8
        case .string, .array: return nil
        }
    }

    /// The fewest bytes one value of this type can take in a file (a string's 8-byte length,
    /// an array's 4-byte type and 8-byte count).
    var minimumEncodedSize: Int {
        switch self {
        case .string: return 8
        case .array: return 12
        default: return fixedSize!
        }
    }

    /// Whether the type is one of the eight integer types.
    public var isInteger: Bool {
        switch self {
        case .uint8, .int8, .uint16, .int16, .uint32, .int32, .uint64, .int64: return true
        default: return false
        }
    }
}

/// A typed GGUF metadata value: one of the twelve scalar types or an array.
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8)
    case int8(Int8)
    case uint16(UInt16)
    case int16(Int16)
    case uint32(UInt32)
    case int32(Int32)
    case uint64(UInt64)
    case int64(Int64)
    case float32(Float)
    case float64(Double)
    case bool(Bool)
    case string(String)
    case array(GGUFArray)

    /// The value's type tag.
    public var type: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .uint64: return .uint64
        case .int64: return .int64
        case .float32: return .float32
        case .float64: return .float64
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        }
    }

    /// The value's type as a readable name: "u32", "str", "arr[str]", "arr[arr[i32]]", …
    public var typeName: String {
        if case let .array(a) = self { return a.typeName }
        return type.description
    }

    /// The value as an `Int` if it is of an integer type and fits.
    public var intValue: Int? {
        switch self {
        case let .uint8(v): return Int(v)
        case let .int8(v): return Int(v)
        case let .uint16(v): return Int(v)
        case let .int16(v): return Int(v)
        case let .uint32(v): return Int(v)
        case let .int32(v): return Int(v)
        case let .uint64(v): return Int(exactly: v)
        case let .int64(v): return Int(v)
        default: return nil
        }
    }
}

/// The items of a GGUF metadata array, all of one type. An array of arrays holds arrays that
/// may each have their own element type (gguf-py writes them; llama.cpp's gguf.cpp rejects them).
public enum GGUFArray: Sendable, Equatable {
    case uint8([UInt8])
    case int8([Int8])
    case uint16([UInt16])
    case int16([Int16])
    case uint32([UInt32])
    case int32([Int32])
    case uint64([UInt64])
    case int64([Int64])
    case float32([Float])
    case float64([Double])
    case bool([Bool])
    case string([String])
    case array([GGUFArray])

    /// The type of every item.
    public var elementType: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .uint64: return .uint64
        case .int64: return .int64
        case .float32: return .float32
        case .float64: return .float64
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        }
    }

    /// The number of items.
    public var count: Int {
        switch self {
        case let .uint8(a): return a.count
        case let .int8(a): return a.count
        case let .uint16(a): return a.count
        case let .int16(a): return a.count
        case let .uint32(a): return a.count
        case let .int32(a): return a.count
        case let .uint64(a): return a.count
        case let .int64(a): return a.count
        case let .float32(a): return a.count
        case let .float64(a): return a.count
        case let .bool(a): return a.count
        case let .string(a): return a.count
        case let .array(a): return a.count
        }
    }

    /// "arr[u8]", "arr[str]", "arr[arr[i32]]" (the first item's element type for nested arrays).
    public var typeName: String {
        if case let .array(items) = self {
            return "arr[\(items.first?.typeName ?? "arr")]"
        }
        return "arr[\(elementType)]"
    }

    /// The items as `Int`s if they are of an integer type and all fit.
    public var intValues: [Int]? {
        switch self {
        case let .uint8(a): return a.map { Int($0) }
        case let .int8(a): return a.map { Int($0) }
        case let .uint16(a): return a.map { Int($0) }
        case let .int16(a): return a.map { Int($0) }
        case let .uint32(a): return a.map { Int($0) }
        case let .int32(a): return a.map { Int($0) }
        case let .int64(a): return a.map { Int($0) }
        case let .uint64(a):
            var out = [Int]()
            out.reserveCapacity(a.count)
            for v in a {
                guard let i = Int(exactly: v) else { return nil }
                out.append(i)
            }
            return out
        default: return nil
        }
    }
}

/// GGUF metadata: key / value pairs in file order, looked up by key.
///
/// Setting a key that is already present replaces its value in place (as gguf-py does);
/// a new key goes to the end.
public struct GGUFMetadata: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    /// One key / value pair.
    public struct Entry: Sendable, Equatable {
        public var key: String
        public var value: GGUFValue
        public init(key: String, value: GGUFValue) {
            self.key = key
            self.value = value
        }
    }

    /// The pairs in order.
    public private(set) var entries: [Entry] = []
    private var index: [String: Int] = [:]

    /// Empty metadata.
    public init() {}

    /// Metadata with `pairs` in order (a repeated key keeps its first position and last value).
    public init(_ pairs: [(String, GGUFValue)]) {
        for (k, v) in pairs { self[k] = v }
    }

    public init(dictionaryLiteral elements: (String, GGUFValue)...) {
        self.init(elements)
    }

    /// The number of pairs.
    public var count: Int { entries.count }

    /// The keys in order.
    public var keys: [String] { entries.map(\.key) }

    /// Whether `key` is present.
    public func contains(_ key: String) -> Bool { index[key] != nil }

    /// The value of `key`, or nil; setting nil removes the key.
    public subscript(key: String) -> GGUFValue? {
        get { index[key].map { entries[$0].value } }
        set {
            if let i = index[key] {
                if let newValue {
                    entries[i].value = newValue
                } else {
                    entries.remove(at: i)
                    index[key] = nil
                    for j in i ..< entries.count { index[entries[j].key] = j }
                }
            } else if let newValue {
                index[key] = entries.count
                entries.append(Entry(key: key, value: newValue))
            }
        }
    }

    public static func == (a: GGUFMetadata, b: GGUFMetadata) -> Bool { a.entries == b.entries }
}
