import Foundation
import GemmaQuant
import XCTest

/// The fixtures written by scripts/make_gguf_fixtures.py and helpers mirroring that script.
enum GGUFFixtures {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("gguf")

    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    static func data(_ name: String) throws -> Data { try Data(contentsOf: directory.appendingPathComponent(name)) }

    static func json(_ name: String) throws -> JSON { try JSONDecoder().decode(JSON.self, from: data(name)) }

    // MARK: Mirrors of the script's generators

    static func splitmix64(_ i: UInt64) -> UInt64 {
        var z = (i &+ 1) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The bytes zero-padded to a multiple of 8 and read as little-endian u64 words w[i]:
    /// sum((w[i] + 1) * splitmix64(i)) mod 2^64 as 16 hex digits.
    static func checksum(_ bytes: [UInt8]) -> String {
        var padded = bytes
        padded += [UInt8](repeating: 0, count: (8 - bytes.count % 8) % 8)
        var total: UInt64 = 0
        padded.withUnsafeBytes { raw in
            for i in 0 ..< raw.count / 8 {
                let w = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
                total &+= (w &+ 1) &* splitmix64(UInt64(i))
            }
        }
        let s = String(total, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    static func checksum(floats: [Float]) -> String { checksum(littleEndianBytes(floats.map(\.bitPattern))) }
    static func checksum(halves: [UInt16]) -> String { checksum(littleEndianBytes(halves)) }

    static func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
        values.map { $0.littleEndian }.withUnsafeBytes { Array($0) }
    }

    /// The script's `generated_values(n)`.
    static func generatedValues(_ n: Int) -> [Float] {
        (0 ..< n).map { i in
            let z = splitmix64(UInt64(i))
            if z >> 60 == 0 { return 0 }
            let mantissa = Int64(z & 0xFF_FFFF) - 0x80_0000
            let elementExponent = Int((z >> 40) & 7) - 4
            let block = splitmix64(UInt64(i / 32) + (1 << 32))
            let blockExponent = Int(block % 40) - 20
            return Float(mantissa) * Float(sign: .plus, exponent: elementExponent + blockExponent - 23, significand: 1)
        }
    }

    // MARK: Hex

    static func bytes(hex: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(hex.utf8.count / 2)
        var high: UInt8? = nil
        for c in hex.utf8 {
            let v: UInt8 = c <= 57 ? c - 48 : c - 87
            if let h = high {
                out.append(h << 4 | v)
                high = nil
            } else {
                high = v
            }
        }
        return out
    }

    static func floats(hex: String) -> [Float] {
        let b = bytes(hex: hex)
        return stride(from: 0, to: b.count, by: 4).map { i in
            Float(bitPattern: UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24)
        }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    // MARK: JSON descriptions of GGUF files

    /// The metadata a description lists, as the library's values.
    static func metadata(_ description: JSON) -> GGUFMetadata {
        var m = GGUFMetadata()
        for entry in description["metadata"].arrayValue {
            m[entry["key"].stringValue] = value(entry)
        }
        return m
    }

    /// {"type": T, "value": V} or {"type": "array", "element_type": E, "value": [...]}.
    static func value(_ object: JSON) -> GGUFValue {
        let type = object["type"].stringValue
        if type == "array" { return .array(array(object)) }
        return scalar(type, object["value"])
    }

    static func array(_ object: JSON) -> GGUFArray {
        let items = object["value"].arrayValue
        switch object["element_type"].stringValue {
        case "u8": return .uint8(items.map { UInt8($0.integer) })
        case "i8": return .int8(items.map { Int8($0.integer) })
        case "u16": return .uint16(items.map { UInt16($0.integer) })
        case "i16": return .int16(items.map { Int16($0.integer) })
        case "u32": return .uint32(items.map { UInt32($0.integer) })
        case "i32": return .int32(items.map { Int32($0.integer) })
        case "u64": return .uint64(items.map { $0.unsigned })
        case "i64": return .int64(items.map { Int64($0.integer) })
        case "f32": return .float32(items.map { Float(bitPattern: UInt32($0.stringValue, radix: 16)!) })
        case "f64": return .float64(items.map { Double(bitPattern: UInt64($0.stringValue, radix: 16)!) })
        case "bool": return .bool(items.map(\.boolValue))
        case "string": return .string(items.map(\.stringValue))
        case "array": return .array(items.map { array($0) })
        case let other: fatalError("unknown element type \(other)")
        }
    }

    static func scalar(_ type: String, _ v: JSON) -> GGUFValue {
        switch type {
        case "u8": return .uint8(UInt8(v.integer))
        case "i8": return .int8(Int8(v.integer))
        case "u16": return .uint16(UInt16(v.integer))
        case "i16": return .int16(Int16(v.integer))
        case "u32": return .uint32(UInt32(v.integer))
        case "i32": return .int32(Int32(v.integer))
        case "u64": return .uint64(v.unsigned)
        case "i64": return .int64(Int64(v.integer))
        case "f32": return .float32(Float(bitPattern: UInt32(v.stringValue, radix: 16)!))
        case "f64": return .float64(Double(bitPattern: UInt64(v.stringValue, radix: 16)!))
        case "bool": return .bool(v.boolValue)
        case "string": return .string(v.stringValue)
        case let other: fatalError("unknown type \(other)")
        }
    }

    static func type(_ name: String) -> GGMLType {
        GGMLType.allCases.first { $0.name == name }!
    }
}

/// A JSON document (enough of one for the fixtures; integers keep all 64 bits).
enum JSON: Decodable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([String: JSON])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .int(i) }
        else if let u = try? c.decode(UInt64.self) { self = .uint(u) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSON].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSON].self)) }
    }

    subscript(key: String) -> JSON {
        if case let .object(o) = self, let v = o[key] { return v }
        return .null
    }

    var arrayValue: [JSON] { if case let .array(a) = self { return a }; return [] }
    var stringValue: String { if case let .string(s) = self { return s }; return "" }
    var boolValue: Bool { if case let .bool(b) = self { return b }; return false }
    var integer: Int64 {
        switch self {
        case let .int(i): return i
        case let .uint(u): return Int64(u)
        default: return 0
        }
    }
    var unsigned: UInt64 {
        switch self {
        case let .int(i): return UInt64(i)
        case let .uint(u): return u
        default: return 0
        }
    }
    var intValue: Int { Int(integer) }
}

/// A fresh, empty directory under the system's temporary directory, removed by `remove()`.
struct ScratchDirectory {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "gemmaquant-XXXXXX").utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw CocoaError(.fileWriteUnknown)
        }
        path = String(cString: p)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func contents() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: path).sorted() }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Builds raw GGUF bytes by hand, valid or not.
struct ByteBuilder {
    var bytes: [UInt8] = []

    mutating func raw(_ b: [UInt8]) { bytes += b }
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u32(_ v: UInt32) { bytes += GGUFFixtures.littleEndianBytes([v]) }
    mutating func u64(_ v: UInt64) { bytes += GGUFFixtures.littleEndianBytes([v]) }
    mutating func string(_ s: String) {
        u64(UInt64(s.utf8.count))
        bytes += Array(s.utf8)
    }
    mutating func header(version: UInt32 = 3, tensors: UInt64, kvs: UInt64) {
        raw(Array("GGUF".utf8))
        u32(version)
        u64(tensors)
        u64(kvs)
    }
    mutating func tensorInfo(_ name: String, dims: [UInt64], type: UInt32, offset: UInt64) {
        string(name)
        u32(UInt32(dims.count))
        for d in dims { u64(d) }
        u32(type)
        u64(offset)
    }
    mutating func pad(to alignment: Int) {
        while bytes.count % alignment != 0 { bytes.append(0) }
    }
}

/// Asserts that `body` throws a `GGUFError` whose problem matches, and returns it.
@discardableResult
func assertGGUFError<T>(_ body: @autoclosure () throws -> T, file: StaticString = #filePath, line: UInt = #line,
                        _ matches: (GGUFError.Problem) -> Bool) -> GGUFError? {
    do {
        _ = try body()
        XCTFail("expected a GGUFError, got success", file: file, line: line)
    } catch let error as GGUFError {
        XCTAssertTrue(matches(error.problem), "unexpected problem: \(error)", file: file, line: line)
        return error
    } catch {
        XCTFail("expected a GGUFError, got \(error)", file: file, line: line)
    }
    return nil
}

/// Asserts that `body` throws a `GGUFWriteError` whose problem matches, and returns it.
@discardableResult
func assertWriteError<T>(_ body: @autoclosure () throws -> T, file: StaticString = #filePath, line: UInt = #line,
                         _ matches: (GGUFWriteError.Problem) -> Bool) -> GGUFWriteError? {
    do {
        _ = try body()
        XCTFail("expected a GGUFWriteError, got success", file: file, line: line)
    } catch let error as GGUFWriteError {
        XCTAssertTrue(matches(error.problem), "unexpected problem: \(error)", file: file, line: line)
        return error
    } catch {
        XCTFail("expected a GGUFWriteError, got \(error)", file: file, line: line)
    }
    return nil
}
