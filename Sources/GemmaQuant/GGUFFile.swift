#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One tensor of a GGUF file: its name, shape, element type and where its data is.
public struct GGUFTensorInfo: Sendable, Equatable {
    /// The tensor's name ("token_embd.weight", …).
    public let name: String
    /// Dimensions in ggml order: `dimensions[0]` is the length of a contiguous row (PyTorch's
    /// last dimension), then the number of rows, and so on (the reverse of PyTorch's shape).
    public let dimensions: [Int]
    /// The element type.
    public let type: GGMLType
    /// Offset of the data from the start of the file's data section.
    public let offset: Int
    /// Bytes of data.
    public let byteCount: Int
    /// Number of elements (the product of the dimensions).
    public let elementCount: Int

    /// Elements per row (`dimensions[0]`, 1 for a 0-dimensional tensor).
    public var rowLength: Int { dimensions.first ?? 1 }
    /// Number of rows (the product of the other dimensions).
    public var rowCount: Int { rowLength == 0 ? 0 : elementCount / rowLength }
    /// Bytes of one row.
    public var rowByteCount: Int { type.rowBytes(rowLength) }

    public init(name: String, dimensions: [Int], type: GGMLType, offset: Int, byteCount: Int, elementCount: Int) {
        self.name = name
        self.dimensions = dimensions
        self.type = type
        self.offset = offset
        self.byteCount = byteCount
        self.elementCount = elementCount
    }
}

/// A GGUF file (version 3, or 2), memory-mapped read-only: its metadata, its tensor table and
/// views of each tensor's bytes.
///
/// Everything in the header is checked against the file size while it is parsed, so a truncated
/// or corrupt file gives a `GGUFError` naming the file, the offset and what was being read; no
/// input makes the parser crash or allocate more than the file could describe. Tensor data is
/// not read until asked for. The mapping lives as long as the object: keep the `GGUFFile` alive
/// while using views or pointers into it (and do not truncate the file meanwhile).
public final class GGUFFile: @unchecked Sendable {
    // @unchecked: every stored property is immutable after init; the mapping is only read.

    /// Arrays of arrays nested deeper than this are rejected (it bounds the parser's recursion).
    public static let maximumArrayNesting = 8
    /// The alignment used when `general.alignment` is absent.
    public static let defaultAlignment = 32

    /// The file's path (or the name given to in-memory bytes).
    public let path: String
    /// The GGUF version (2 or 3).
    public let version: UInt32
    /// The metadata in file order.
    public let metadata: GGUFMetadata
    /// The tensors in file order.
    public let tensors: [GGUFTensorInfo]
    /// The data alignment: `general.alignment`, or 32.
    public let alignment: Int
    /// Absolute file offset of the data section (tensor offsets are relative to it).
    public let dataOffset: Int
    /// The file's size in bytes.
    public var fileSize: Int { storage.count }

    private let storage: FileStorage
    private let tensorIndex: [String: Int]

    /// Maps and parses the file at `path`.
    public convenience init(path: String) throws(GGUFError) {
        try self.init(storage: FileStorage(mapping: path), path: path)
    }

    /// Parses GGUF bytes held in memory (they are copied); `name` stands in for the path in errors.
    public convenience init(bytes: [UInt8], name: String = "<memory>") throws(GGUFError) {
        try self.init(storage: FileStorage(copying: bytes), path: name)
    }

    private init(storage: FileStorage, path: String) throws(GGUFError) {
        self.storage = storage
        self.path = path
        var parser = Parser(bytes: storage.buffer, path: path)
        let header = try parser.parse()
        version = header.version
        metadata = header.metadata
        tensors = header.tensors
        alignment = header.alignment
        dataOffset = header.dataOffset
        var index: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { index[t.name] = i }
        tensorIndex = index
    }

    private func error(_ problem: GGUFError.Problem) -> GGUFError {
        GGUFError(path: path, problem: problem)
    }

    // MARK: Metadata

    /// The value of `key`, or nil.
    public func value(_ key: String) -> GGUFValue? { metadata[key] }

    /// Whether `key` is present.
    public func contains(_ key: String) -> Bool { metadata.contains(key) }

    private func require(_ key: String) throws(GGUFError) -> GGUFValue {
        guard let v = metadata[key] else { throw error(.missingKey(key)) }
        return v
    }

    /// The string value of `key`.
    public func string(_ key: String) throws(GGUFError) -> String {
        let v = try require(key)
        guard case let .string(s) = v else { throw error(.wrongType(key: key, expected: "str", found: v.typeName)) }
        return s
    }

    /// The value of `key`, which may have any of the eight integer types.
    public func int(_ key: String) throws(GGUFError) -> Int {
        let v = try require(key)
        guard v.type.isInteger else { throw error(.wrongType(key: key, expected: "an integer", found: v.typeName)) }
        guard let i = v.intValue else { throw error(.valueOutOfRange(key: key, value: "\(v)")) }
        return i
    }

    /// The value of `key`, an f32 (or an f64, rounded to f32).
    public func float(_ key: String) throws(GGUFError) -> Float {
        let v = try require(key)
        switch v {
        case let .float32(f): return f
        case let .float64(d): return Float(d)
        default: throw error(.wrongType(key: key, expected: "f32 or f64", found: v.typeName))
        }
    }

    /// The value of `key`, an f32 or f64.
    public func double(_ key: String) throws(GGUFError) -> Double {
        let v = try require(key)
        switch v {
        case let .float32(f): return Double(f)
        case let .float64(d): return d
        default: throw error(.wrongType(key: key, expected: "f32 or f64", found: v.typeName))
        }
    }

    /// The boolean value of `key`.
    public func bool(_ key: String) throws(GGUFError) -> Bool {
        let v = try require(key)
        guard case let .bool(b) = v else { throw error(.wrongType(key: key, expected: "bool", found: v.typeName)) }
        return b
    }

    private func requireArray(_ key: String, expected: String) throws(GGUFError) -> GGUFArray {
        let v = try require(key)
        guard case let .array(a) = v else { throw error(.wrongType(key: key, expected: expected, found: v.typeName)) }
        return a
    }

    /// The array of strings at `key`.
    public func stringArray(_ key: String) throws(GGUFError) -> [String] {
        let a = try requireArray(key, expected: "arr[str]")
        guard case let .string(s) = a else { throw error(.wrongType(key: key, expected: "arr[str]", found: a.typeName)) }
        return s
    }

    /// The array at `key`, whose items may have any integer type.
    public func intArray(_ key: String) throws(GGUFError) -> [Int] {
        let a = try requireArray(key, expected: "an array of integers")
        guard a.elementType.isInteger else {
            throw error(.wrongType(key: key, expected: "an array of integers", found: a.typeName))
        }
        guard let values = a.intValues else { throw error(.valueOutOfRange(key: key, value: "an item beyond Int.max")) }
        return values
    }

    /// The array at `key`, of f32 (or f64 items rounded to f32).
    public func floatArray(_ key: String) throws(GGUFError) -> [Float] {
        let a = try requireArray(key, expected: "arr[f32] or arr[f64]")
        switch a {
        case let .float32(f): return f
        case let .float64(d): return d.map { Float($0) }
        default: throw error(.wrongType(key: key, expected: "arr[f32] or arr[f64]", found: a.typeName))
        }
    }

    // MARK: Tensors

    /// The tensor called `name`.
    public func tensor(named name: String) throws(GGUFError) -> GGUFTensorInfo {
        guard let i = tensorIndex[name] else { throw error(.missingTensor(name)) }
        return tensors[i]
    }

    /// Whether there is a tensor called `name`.
    public func hasTensor(named name: String) -> Bool { tensorIndex[name] != nil }

    private func range(of tensor: GGUFTensorInfo) throws(GGUFError) -> Range<Int> {
        guard let i = tensorIndex[tensor.name], tensors[i] == tensor else {
            throw error(.foreignTensorInfo(tensor.name))
        }
        let start = dataOffset + tensor.offset  // checked against the file size while parsing
        return start ..< start + tensor.byteCount
    }

    /// Calls `body` with a view of `tensor`'s bytes in the mapped file.
    public func withBytes<R>(of tensor: GGUFTensorInfo, _ body: (RawSpan) throws -> R) throws -> R {
        let r = try range(of: tensor)
        let view = UnsafeRawBufferPointer(rebasing: storage.buffer[r])
        return try body(view.bytes)
    }

    /// A copy of `tensor`'s bytes.
    public func bytes(of tensor: GGUFTensorInfo) throws(GGUFError) -> [UInt8] {
        let r = try range(of: tensor)
        return Array(UnsafeRawBufferPointer(rebasing: storage.buffer[r]))
    }

    /// `tensor`'s elements decoded to `Float` (F32, F16, BF16, Q8_0 and Q4_0 tensors).
    public func floats(of tensor: GGUFTensorInfo) throws(GGUFError) -> [Float] {
        let r = try range(of: tensor)
        let view = UnsafeRawBufferPointer(rebasing: storage.buffer[r])
        do {
            return try tensor.type.decode(view.bytes)
        } catch {
            throw self.error(.cannotDecode(tensor: tensor.name, reason: error.description))
        }
    }

    /// The bytes are a read-only mapping of the file at `path` (not an in-memory copy).
    public var isMapped: Bool { storage.mapped }

    /// The address and length of `tensor`'s bytes in the mapping, for compute kernels that keep
    /// pointers. The memory is read-only and stays valid exactly as long as this `GGUFFile`
    /// object: hold a reference to it (as the "owner" of the weights) while the pointer is used.
    public func unsafeBytes(of tensor: GGUFTensorInfo) throws(GGUFError) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: storage.buffer[try range(of: tensor)])
    }
}

// MARK: - Storage

/// The bytes of a file: a read-only private mapping, or an owned copy of in-memory bytes.
private final class FileStorage {
    let buffer: UnsafeRawBufferPointer
    let mapped: Bool

    var count: Int { buffer.count }

    init(mapping path: String) throws(GGUFError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw GGUFError(path: path, problem: .cannotOpen(reason: POSIX.message(POSIX.errorNumber)))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw GGUFError(path: path, problem: .cannotOpen(reason: POSIX.message(POSIX.errorNumber)))
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw GGUFError(path: path, problem: .notARegularFile)
        }
        let size = Int(st.st_size)
        if size == 0 {
            buffer = UnsafeRawBufferPointer(start: nil, count: 0)
            mapped = false
            return
        }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw GGUFError(path: path, problem: .cannotOpen(reason: "mmap failed: " + POSIX.message(POSIX.errorNumber)))
        }
        buffer = UnsafeRawBufferPointer(start: base, count: size)
        mapped = true
    }

    init(copying bytes: [UInt8]) {
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 64)
        memory.copyBytes(from: bytes)
        buffer = UnsafeRawBufferPointer(memory)
        mapped = false
    }

    deinit {
        guard let base = buffer.baseAddress else { return }
        if mapped {
            munmap(UnsafeMutableRawPointer(mutating: base), buffer.count)
        } else {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }
}

// MARK: - Parser

/// Reads the header of a GGUF file, checking every length against the bytes that remain.
private struct Parser {
    struct Header {
        var version: UInt32
        var metadata: GGUFMetadata
        var tensors: [GGUFTensorInfo]
        var alignment: Int
        var dataOffset: Int
    }

    let bytes: UnsafeRawBufferPointer
    let path: String
    var offset = 0

    init(bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes
        self.path = path
    }

    var remaining: Int { bytes.count - offset }

    func fail(_ problem: GGUFError.Problem) -> GGUFError {
        GGUFError(path: path, problem: problem)
    }

    mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws(GGUFError) {
        if n > remaining { throw fail(.truncated(offset: offset, reading: what())) }
    }

    mutating func load<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws(GGUFError) -> T {
        try need(MemoryLayout<T>.size, what())
        let v = T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += MemoryLayout<T>.size
        return v
    }

    mutating func string(_ what: @autoclosure () -> String) throws(GGUFError) -> String {
        let start = offset
        let length = try load(UInt64.self, "the length of " + what())
        guard length <= UInt64(remaining) else {
            throw fail(.stringTooLong(length: length, offset: start, reading: what()))
        }
        let n = Int(length)
        let raw = UnsafeRawBufferPointer(rebasing: bytes[offset ..< offset + n])
        guard let s = String(validating: raw, as: UTF8.self) else {
            throw fail(.invalidUTF8(offset: start, reading: what()))
        }
        offset += n
        return s
    }

    mutating func parse() throws(GGUFError) -> Header {
        // Header.
        try need(4, "the magic")
        let magic = Array(UnsafeRawBufferPointer(rebasing: bytes[0 ..< 4]))
        guard magic == Array("GGUF".utf8) else { throw fail(.badMagic(found: magic)) }
        offset = 4
        let version = try load(UInt32.self, "the version")
        guard version == 2 || version == 3 else { throw fail(.unsupportedVersion(version)) }
        let tensorCountOffset = offset
        let tensorCount = try load(UInt64.self, "the tensor count")
        let kvCountOffset = offset
        let kvCount = try load(UInt64.self, "the metadata key/value count")
        // A key/value takes at least 8 + 4 + 1 bytes, a tensor info at least 8 + 4 + 4 + 8.
        guard kvCount <= UInt64(remaining / 13) else {
            throw fail(.absurdCount(what: "metadata key/value count", count: kvCount, offset: kvCountOffset))
        }
        guard tensorCount <= UInt64(remaining / 24) else {
            throw fail(.absurdCount(what: "tensor count", count: tensorCount, offset: tensorCountOffset))
        }

        // Metadata.
        var metadata = GGUFMetadata()
        for i in 0 ..< Int(kvCount) {
            let key = try string("the key of metadata entry \(i)")
            guard !metadata.contains(key) else { throw fail(.duplicateKey(key)) }
            let typeOffset = offset
            let rawType = try load(UInt32.self, "the value type of key '\(key)'")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw fail(.unknownValueType(rawType, key: key, offset: typeOffset))
            }
            metadata[key] = try value(of: type, key: key)
        }

        var alignment = GGUFFile.defaultAlignment
        if let a = metadata["general.alignment"] {
            guard a.type.isInteger, let n = a.intValue, n > 0, n <= 1 << 30, n & (n - 1) == 0 else {
                throw fail(.invalidAlignment("\(a) (\(a.typeName))"))
            }
            alignment = n
        }

        // Tensor infos.
        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(Int(tensorCount))
        var names = Set<String>()
        var rawOffsets: [UInt64] = []
        for i in 0 ..< Int(tensorCount) {
            let name = try string("the name of tensor \(i)")
            guard names.insert(name).inserted else { throw fail(.duplicateTensorName(name)) }
            let dimCount = try load(UInt32.self, "the dimension count of tensor '\(name)'")
            guard dimCount <= 4 else { throw fail(.tooManyDimensions(tensor: name, count: dimCount)) }
            var rawDims: [UInt64] = []
            for d in 0 ..< Int(dimCount) {
                rawDims.append(try load(UInt64.self, "dimension \(d) of tensor '\(name)'"))
            }
            let typeID = try load(UInt32.self, "the type of tensor '\(name)'")
            let dataOffset = try load(UInt64.self, "the data offset of tensor '\(name)'")
            guard let type = GGMLType(rawValue: typeID) else {
                throw fail(.unknownTensorType(tensor: name, typeID: typeID))
            }
            var dims: [Int] = []
            var elements = 1
            for d in rawDims {
                guard let v = Int(exactly: d) else { throw fail(.invalidDimensions(tensor: name, dimensions: rawDims)) }
                let (p, overflow) = elements.multipliedReportingOverflow(by: v)
                guard !overflow else { throw fail(.invalidDimensions(tensor: name, dimensions: rawDims)) }
                dims.append(v)
                elements = p
            }
            let rowLength = dims.first ?? 1
            guard rowLength % type.blockSize == 0 else {
                throw fail(.rowNotMultipleOfBlock(tensor: name, rowLength: rowLength, type: type))
            }
            let (byteCount, overflow) = (elements / type.blockSize).multipliedReportingOverflow(by: type.bytesPerBlock)
            guard !overflow else { throw fail(.invalidDimensions(tensor: name, dimensions: rawDims)) }
            rawOffsets.append(dataOffset)
            tensors.append(GGUFTensorInfo(name: name, dimensions: dims, type: type, offset: 0,
                                          byteCount: byteCount, elementCount: elements))
        }

        // Data section and tensor ranges.
        let dataStart = (offset + alignment - 1) / alignment * alignment
        let fileSize = bytes.count
        for i in tensors.indices {
            let t = tensors[i]
            let raw = rawOffsets[i]
            guard raw % UInt64(alignment) == 0 else {
                throw fail(.misalignedTensorOffset(tensor: t.name, offset: raw, alignment: alignment))
            }
            guard raw <= UInt64(fileSize), dataStart <= fileSize,
                  Int(raw) <= fileSize - dataStart, t.byteCount <= fileSize - dataStart - Int(raw) else {
                throw fail(.tensorDataOutOfRange(tensor: t.name, offset: raw, byteCount: t.byteCount,
                                                 dataStart: dataStart, fileSize: fileSize))
            }
            tensors[i] = GGUFTensorInfo(name: t.name, dimensions: t.dimensions, type: t.type, offset: Int(raw),
                                        byteCount: t.byteCount, elementCount: t.elementCount)
        }
        return Header(version: version, metadata: metadata, tensors: tensors, alignment: alignment, dataOffset: dataStart)
    }

    mutating func value(of type: GGUFValueType, key: String) throws(GGUFError) -> GGUFValue {
        let what = "the value of key '\(key)'"
        switch type {
        case .uint8: return .uint8(try load(UInt8.self, what))
        case .int8: return .int8(try load(Int8.self, what))
        case .uint16: return .uint16(try load(UInt16.self, what))
        case .int16: return .int16(try load(Int16.self, what))
        case .uint32: return .uint32(try load(UInt32.self, what))
        case .int32: return .int32(try load(Int32.self, what))
        case .uint64: return .uint64(try load(UInt64.self, what))
        case .int64: return .int64(try load(Int64.self, what))
        case .float32: return .float32(Float(bitPattern: try load(UInt32.self, what)))
        case .float64: return .float64(Double(bitPattern: try load(UInt64.self, what)))
        case .bool: return .bool(try load(UInt8.self, what) != 0)
        case .string: return .string(try string(what))
        case .array: return .array(try array(key: key, depth: 1))
        }
    }

    mutating func array(key: String, depth: Int) throws(GGUFError) -> GGUFArray {
        let typeOffset = offset
        let rawType = try load(UInt32.self, "the item type of array '\(key)'")
        guard let type = GGUFValueType(rawValue: rawType) else {
            throw fail(.unknownValueType(rawType, key: key, offset: typeOffset))
        }
        let countOffset = offset
        let count = try load(UInt64.self, "the item count of array '\(key)'")
        guard count <= UInt64(remaining / type.minimumEncodedSize) else {
            throw fail(.arrayTooLong(count: count, offset: countOffset, key: key))
        }
        let n = Int(count)
        switch type {
        case .uint8: return .uint8(items(n, UInt8.self) { $0 })
        case .int8: return .int8(items(n, Int8.self) { $0 })
        case .uint16: return .uint16(items(n, UInt16.self) { $0 })
        case .int16: return .int16(items(n, Int16.self) { $0 })
        case .uint32: return .uint32(items(n, UInt32.self) { $0 })
        case .int32: return .int32(items(n, Int32.self) { $0 })
        case .uint64: return .uint64(items(n, UInt64.self) { $0 })
        case .int64: return .int64(items(n, Int64.self) { $0 })
        case .float32: return .float32(items(n, UInt32.self) { Float(bitPattern: $0) })
        case .float64: return .float64(items(n, UInt64.self) { Double(bitPattern: $0) })
        case .bool: return .bool(items(n, UInt8.self) { $0 != 0 })
        case .string:
            var out: [String] = []
            out.reserveCapacity(n)
            for i in 0 ..< n { out.append(try string("item \(i) of array '\(key)'")) }
            return .string(out)
        case .array:
            guard depth < GGUFFile.maximumArrayNesting else {
                throw fail(.arraysNestedTooDeep(key: key, offset: typeOffset))
            }
            var out: [GGUFArray] = []
            out.reserveCapacity(n)
            for _ in 0 ..< n { out.append(try array(key: key, depth: depth + 1)) }
            return .array(out)
        }
    }

    /// Reads `n` fixed-size little-endian items; the caller has checked they fit.
    mutating func items<T: FixedWidthInteger, U>(_ n: Int, _: T.Type, _ convert: (T) -> U) -> [U] {
        let size = MemoryLayout<T>.size
        var out: [U] = []
        out.reserveCapacity(n)
        for i in 0 ..< n {
            out.append(convert(T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + i * size, as: T.self))))
        }
        offset += n * size
        return out
    }
}
