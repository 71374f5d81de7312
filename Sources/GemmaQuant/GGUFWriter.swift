#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A tensor to be written by `GGUFWriter`: its name, its dimensions in ggml order
/// (`dimensions[0]` is the row length, the reverse of PyTorch's shape) and its element type.
public struct GGUFTensorDeclaration: Sendable, Equatable {
    public var name: String
    public var dimensions: [Int]
    public var type: GGMLType

    public init(name: String, dimensions: [Int], type: GGMLType) {
        self.name = name
        self.dimensions = dimensions
        self.type = type
    }
}

/// Why a `GGUFWriter` could not write its file. `path` is the final path asked for.
public struct GGUFWriteError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file being written (its final path).
    public let path: String
    /// What went wrong.
    public let problem: Problem

    public init(path: String, problem: Problem) {
        self.path = path
        self.problem = problem
    }

    /// What went wrong.
    public enum Problem: Sendable, Equatable {
        /// The directory the file should go into does not exist.
        case directoryMissing(String)
        /// The parent path exists but is not a directory.
        case notADirectory(String)
        /// The temporary file could not be created; `reason` is the system's message.
        case cannotCreate(temporaryFile: String, reason: String)
        /// Writing failed at file offset `offset` (disk full, file too large, I/O error …).
        case writeFailed(offset: Int, reason: String)
        /// fsync, close or rename failed.
        case cannotFinish(step: String, reason: String)
        /// Two metadata keys, or a key that is empty.
        case invalidKey(String)
        /// `general.alignment` is not a u32 holding a power of two.
        case invalidAlignment(String)
        /// Two tensors with one name, or a name that llama.cpp cannot load (empty, 64 bytes or more).
        case invalidTensorName(String, reason: String)
        /// A tensor with more than 4 dimensions, a negative dimension, or a size that overflows.
        case invalidDimensions(tensor: String, dimensions: [Int])
        /// A block-quantized tensor whose rows are not a whole number of blocks.
        case rowNotMultipleOfBlock(tensor: String, rowLength: Int, type: GGMLType)
        /// Data was given for `got` while `expected` is the next tensor in the declared order (nil: all written).
        case unexpectedTensor(expected: String?, got: String)
        /// A tensor's data has the wrong number of bytes (`got` counts what was given so far).
        case wrongByteCount(tensor: String, expected: Int, got: Int)
        /// `writeTensor(_:values:)` got `got` values for a tensor of `expected` elements.
        case wrongElementCount(tensor: String, expected: Int, got: Int)
        /// `writeTensor(_:values:)` cannot encode the tensor's type.
        case cannotEncode(tensor: String, reason: String)
        /// `finish()` was called before the data of these tensors was written.
        case tensorsNotWritten([String])
        /// The writer already finished, was aborted, or failed earlier (`state` says which).
        case notWritable(state: String)
    }

    public var description: String {
        switch problem {
        case let .directoryMissing(dir):
            return "\(path): cannot write: the directory '\(dir)' does not exist; create it first"
        case let .notADirectory(dir):
            return "\(path): cannot write: '\(dir)' is not a directory"
        case let .cannotCreate(temp, reason):
            return "\(path): cannot create the temporary file '\(temp)': \(reason)"
        case let .writeFailed(offset, reason):
            return "\(path): writing failed at offset \(offset): \(reason); nothing was left behind"
        case let .cannotFinish(step, reason):
            return "\(path): \(step) failed: \(reason); nothing was left behind"
        case let .invalidKey(key):
            return "\(path): invalid metadata key '\(key)' (keys must be non-empty)"
        case let .invalidAlignment(value):
            return "\(path): general.alignment is \(value); it must be a u32 power of two"
        case let .invalidTensorName(name, reason):
            return "\(path): invalid tensor name '\(name)': \(reason)"
        case let .invalidDimensions(tensor, dims):
            return "\(path): tensor '\(tensor)' has invalid dimensions \(dims) (at most 4, none negative, size must fit in memory)"
        case let .rowNotMultipleOfBlock(tensor, rowLength, type):
            return "\(path): tensor '\(tensor)' has rows of \(rowLength) elements, not a multiple of the \(type.name) block size \(type.blockSize)"
        case let .unexpectedTensor(expected, got):
            if let expected {
                return "\(path): got data for tensor '\(got)' but the next declared tensor is '\(expected)'; write tensors in the declared order"
            }
            return "\(path): got data for tensor '\(got)' but every declared tensor has been written"
        case let .wrongByteCount(tensor, expected, got):
            return "\(path): tensor '\(tensor)' needs exactly \(expected) bytes, got \(got)"
        case let .wrongElementCount(tensor, expected, got):
            return "\(path): tensor '\(tensor)' has \(expected) elements, got \(got) values"
        case let .cannotEncode(tensor, reason):
            return "\(path): cannot encode tensor '\(tensor)': \(reason)"
        case let .tensorsNotWritten(names):
            return "\(path): finish() called before the data of \(names.count) tensor(s) was written: \(names.prefix(5).joined(separator: ", "))"
        case let .notWritable(state):
            return "\(path): the writer cannot write any more: it has \(state)"
        }
    }
}

/// Writes a GGUF v3 file as a stream: the metadata and tensor table are declared up front and
/// written at once, then each tensor's data is given in the declared order.
///
/// ```swift
/// let writer = try GGUFWriter(path: "model.gguf", metadata: metadata, tensors: declarations)
/// for t in declarations { try writer.writeTensor(t.name, bytes: data(for: t)) }
/// try writer.finish()
/// ```
///
/// The layout is gguf-py's `GGUFWriter` (and llama.cpp's `gguf.cpp`): header, key/values in the
/// given order, tensor infos in the declared order with offsets packed back to back, zero padding
/// to the alignment (`general.alignment` if the metadata sets it, else 32), then each tensor's
/// data followed by zero padding to the alignment. Dimensions are written as declared (gguf.cpp
/// would drop trailing 1s).
///
/// Everything goes into a temporary file next to the final path (".NAME.RANDOM.tmp");
/// `finish()` fsyncs it and atomically renames it into place. If anything fails, if `abort()` is called, or if the writer
/// is released without `finish()`, the temporary file is removed and nothing is left behind.
public final class GGUFWriter {
    /// The final path of the file.
    public let path: String
    /// The data alignment.
    public let alignment: Int
    /// The tensors with their offsets and sizes, in the declared (and written) order.
    public let tensors: [GGUFTensorInfo]

    private enum State { case writing, finished, aborted, failed }
    private var state = State.writing
    /// The directory the file is written in (a descriptor this writer owns), the file's name
    /// in it and the temporary file's.
    private let directoryFD: Int32
    private let name: String
    private let temporaryName: String
    private var fd: Int32
    private var buffer: [UInt8] = []
    private static let bufferCapacity = 1 << 20
    /// Bytes handed to the kernel so far (the file offset of `buffer`'s start).
    private var flushed = 0
    private var nextTensor = 0
    private var bytesOfCurrentTensor = 0

    /// Checks the declarations, creates the temporary file and writes the header, metadata,
    /// tensor infos and the padding before the data.
    ///
    /// - Parameters:
    ///   - path: where the finished file goes; its directory must exist.
    ///   - metadata: the key/values, in the order they are written. `general.alignment`, if
    ///     present, must be a `.uint32` power of two.
    ///   - tensors: the tensors, in the order their infos and data are written.
    public convenience init(path: String, metadata: GGUFMetadata, tensors declarations: [GGUFTensorDeclaration]) throws(GGUFWriteError) {
        func fail(_ p: GGUFWriteError.Problem) -> GGUFWriteError { GGUFWriteError(path: path, problem: p) }
        // Validate everything before touching the file system.
        _ = try Self.layout(path: path, metadata: metadata, tensors: declarations)
        let directory = POSIX.directory(of: path)
        switch POSIX.isDirectory(directory) {
        case .success(true): break
        case .success(false): throw fail(.notADirectory(directory))
        case let .failure(e) where e.missing: throw fail(.directoryMissing(directory))
        case let .failure(e): throw fail(.cannotCreate(temporaryFile: directory, reason: POSIX.message(e.code)))
        }
        let dirfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirfd >= 0 else { throw fail(.cannotCreate(temporaryFile: directory, reason: POSIX.message(POSIX.errorNumber))) }
        defer { close(dirfd) }
        try self.init(directory: dirfd, name: POSIX.lastComponent(of: path), path: path, metadata: metadata, tensors: declarations)
    }

    /// Like `init(path:metadata:tensors:)`, but the file is `name` in the directory open as
    /// `directory` (the writer uses a duplicate of the descriptor; the caller keeps its own):
    /// the temporary file is created there with `O_EXCL | O_NOFOLLOW` and renamed with
    /// `renameat`, so no path is looked up again and a directory that is moved or replaced
    /// by a symbolic link meanwhile cannot redirect the write. `path` names the file in errors.
    public init(directory: Int32, name: String, path: String, metadata: GGUFMetadata,
                tensors declarations: [GGUFTensorDeclaration]) throws(GGUFWriteError) {
        self.path = path
        func fail(_ p: GGUFWriteError.Problem) -> GGUFWriteError { GGUFWriteError(path: path, problem: p) }
        let (alignment, infos) = try Self.layout(path: path, metadata: metadata, tensors: declarations)
        self.alignment = alignment
        tensors = infos
        let nameBytes = Array(name.utf8)
        guard !nameBytes.isEmpty, nameBytes != [0x2E], nameBytes != [0x2E, 0x2E], !nameBytes.contains(0x2F), !nameBytes.contains(0) else {
            throw fail(.cannotCreate(temporaryFile: name, reason: "'\(name)' is not a file name"))
        }
        self.name = name

        // Create the temporary file in the destination directory.
        let owned = fcntl(directory, F_DUPFD_CLOEXEC, 0)
        guard owned >= 0 else { throw fail(.cannotCreate(temporaryFile: path, reason: POSIX.message(POSIX.errorNumber))) }
        let pathBytes = Array(path.utf8)
        let prefix = pathBytes.count > nameBytes.count && pathBytes.suffix(nameBytes.count + 1).elementsEqual([0x2F] + nameBytes)
            ? String(decoding: pathBytes.dropLast(nameBytes.count), as: UTF8.self) : ""
        var temp = ""
        var descriptor: Int32 = -1
        for _ in 0 ..< 16 {
            temp = ".\(name).\(String(UInt64.random(in: 0 ... UInt64.max), radix: 36)).tmp"
            descriptor = openat(owned, temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
            if descriptor >= 0 || POSIX.errorNumber != EEXIST { break }
        }
        guard descriptor >= 0 else {
            let error = POSIX.errorNumber
            close(owned)
            throw fail(.cannotCreate(temporaryFile: prefix + temp, reason: POSIX.message(error)))
        }
        directoryFD = owned
        temporaryName = temp
        fd = descriptor
        buffer.reserveCapacity(Self.bufferCapacity)

        // Header, metadata, tensor infos, padding.
        buffer.append(contentsOf: "GGUF".utf8)
        append(UInt32(3))  // GGUF version
        append(UInt64(declarations.count))
        append(UInt64(metadata.count))
        for entry in metadata.entries {
            appendString(entry.key)
            append(entry.value.type.rawValue)
            appendValue(entry.value)
        }
        for t in infos {
            appendString(t.name)
            append(UInt32(t.dimensions.count))
            for d in t.dimensions { append(UInt64(d)) }
            append(t.type.rawValue)
            append(UInt64(t.offset))
        }
        appendPadding()
        try flushIfFull()  // on failure the temporary file is already removed
    }

    deinit {
        if state == .writing { cleanUp() }
        close(directoryFD)
    }

    /// The alignment and the tensor infos of `declarations`, or the first problem with them.
    private static func layout(path: String, metadata: GGUFMetadata, tensors declarations: [GGUFTensorDeclaration])
        throws(GGUFWriteError) -> (Int, [GGUFTensorInfo]) {
        func fail(_ p: GGUFWriteError.Problem) -> GGUFWriteError { GGUFWriteError(path: path, problem: p) }
        var alignment = GGUFFile.defaultAlignment
        for entry in metadata.entries where entry.key.isEmpty { throw fail(.invalidKey(entry.key)) }
        if let a = metadata["general.alignment"] {
            guard case let .uint32(v) = a, v > 0, v & (v - 1) == 0, v <= 1 << 30 else {
                throw fail(.invalidAlignment("\(a) (\(a.typeName))"))
            }
            alignment = Int(v)
        }
        var infos: [GGUFTensorInfo] = []
        var names = Set<String>()
        var offset = 0
        for d in declarations {
            guard !d.name.isEmpty, d.name.utf8.count < 64 else {
                throw fail(.invalidTensorName(d.name, reason: "a name must have 1 to 63 bytes (llama.cpp's GGML_MAX_NAME is 64)"))
            }
            guard names.insert(d.name).inserted else {
                throw fail(.invalidTensorName(d.name, reason: "declared twice"))
            }
            guard d.dimensions.count <= 4, d.dimensions.allSatisfy({ $0 >= 0 }) else {
                throw fail(.invalidDimensions(tensor: d.name, dimensions: d.dimensions))
            }
            var elements = 1
            for v in d.dimensions {
                let (p, overflow) = elements.multipliedReportingOverflow(by: v)
                guard !overflow else { throw fail(.invalidDimensions(tensor: d.name, dimensions: d.dimensions)) }
                elements = p
            }
            let rowLength = d.dimensions.first ?? 1
            guard rowLength % d.type.blockSize == 0 else {
                throw fail(.rowNotMultipleOfBlock(tensor: d.name, rowLength: rowLength, type: d.type))
            }
            let (bytes, o1) = (elements / d.type.blockSize).multipliedReportingOverflow(by: d.type.bytesPerBlock)
            let (next, o2) = offset.addingReportingOverflow(bytes)
            guard !o1, !o2, next <= Int.max - alignment else {
                throw fail(.invalidDimensions(tensor: d.name, dimensions: d.dimensions))
            }
            infos.append(GGUFTensorInfo(name: d.name, dimensions: d.dimensions, type: d.type, offset: offset,
                                        byteCount: bytes, elementCount: elements))
            offset = (next + alignment - 1) / alignment * alignment
        }
        return (alignment, infos)
    }

    // MARK: Data

    /// The next tensor whose data is expected, or nil when all have been written.
    public var nextTensorInfo: GGUFTensorInfo? { nextTensor < tensors.count ? tensors[nextTensor] : nil }

    /// Writes the whole data of tensor `name`, which must be the next declared tensor and must
    /// have exactly its byte count. On error the temporary file is removed and the writer is dead.
    public func writeTensor(_ name: String, bytes: RawSpan) throws(GGUFWriteError) {
        try checkWritable()
        guard let info = nextTensorInfo, info.name == name else {
            throw failure(.unexpectedTensor(expected: nextTensorInfo?.name, got: name))
        }
        guard bytesOfCurrentTensor == 0, bytes.byteCount == info.byteCount else {
            throw failure(.wrongByteCount(tensor: name, expected: info.byteCount, got: bytesOfCurrentTensor + bytes.byteCount))
        }
        try appendTensorBytes(name, bytes: bytes)
    }

    /// Writes the whole data of tensor `name` (see `writeTensor(_:bytes:)` taking a `RawSpan`).
    public func writeTensor(_ name: String, bytes: [UInt8]) throws(GGUFWriteError) {
        try writeTensor(name, bytes: bytes.span.bytes)
    }

    /// Encodes `values` as the type declared for tensor `name` (F32, F16, BF16, Q8_0 or Q4_0)
    /// and writes them as its whole data.
    public func writeTensor(_ name: String, values: [Float]) throws(GGUFWriteError) {
        try checkWritable()
        guard let info = nextTensorInfo, info.name == name else {
            throw failure(.unexpectedTensor(expected: nextTensorInfo?.name, got: name))
        }
        guard values.count == info.elementCount else {
            throw failure(.wrongElementCount(tensor: name, expected: info.elementCount, got: values.count))
        }
        let encoded: [UInt8]
        do { encoded = try info.type.encode(values) } catch {
            throw failure(.cannotEncode(tensor: name, reason: error.description))
        }
        try writeTensor(name, bytes: encoded)
    }

    /// Appends part of tensor `name`'s data; the tensor is complete (and padded) once its byte
    /// count has been given. Lets a large tensor be written in pieces (row by row, say).
    public func appendTensorBytes(_ name: String, bytes: RawSpan) throws(GGUFWriteError) {
        try checkWritable()
        guard let info = nextTensorInfo, info.name == name else {
            throw failure(.unexpectedTensor(expected: nextTensorInfo?.name, got: name))
        }
        let total = bytesOfCurrentTensor + bytes.byteCount
        guard total <= info.byteCount else {
            throw failure(.wrongByteCount(tensor: name, expected: info.byteCount, got: total))
        }
        try write(bytes)
        bytesOfCurrentTensor = total
        if total == info.byteCount {
            appendPadding()
            bytesOfCurrentTensor = 0
            nextTensor += 1
            try flushIfFull()
        }
    }

    /// Flushes, fsyncs and closes the temporary file and renames it to `path` (then fsyncs the
    /// directory). Every declared tensor must have been written.
    public func finish() throws(GGUFWriteError) {
        try checkWritable()
        if nextTensor < tensors.count {
            throw failure(.tensorsNotWritten(tensors[nextTensor...].map(\.name)))
        }
        try flush()
        guard fsync(fd) == 0 else { throw failure(.cannotFinish(step: "fsync", reason: POSIX.message(POSIX.errorNumber))) }
        let closed = close(fd)
        fd = -1
        guard closed == 0 else { throw failure(.cannotFinish(step: "close", reason: POSIX.message(POSIX.errorNumber))) }
        guard renameat(directoryFD, temporaryName, directoryFD, name) == 0 else {
            throw failure(.cannotFinish(step: "rename to the final path", reason: POSIX.message(POSIX.errorNumber)))
        }
        state = .finished
        _ = fsync(directoryFD)  // best effort: makes the rename durable
    }

    /// Stops writing and removes the temporary file. Does nothing once finished or aborted.
    public func abort() {
        guard state == .writing else { return }
        cleanUp()
        state = .aborted
    }

    // MARK: Internals

    private func checkWritable() throws(GGUFWriteError) {
        switch state {
        case .writing: return
        case .finished: throw GGUFWriteError(path: path, problem: .notWritable(state: "finished"))
        case .aborted: throw GGUFWriteError(path: path, problem: .notWritable(state: "been aborted"))
        case .failed: throw GGUFWriteError(path: path, problem: .notWritable(state: "failed earlier"))
        }
    }

    /// Removes the temporary file, marks the writer failed and returns the error to throw.
    private func failure(_ problem: GGUFWriteError.Problem) -> GGUFWriteError {
        if state == .writing {
            cleanUp()
            state = .failed
        }
        return GGUFWriteError(path: path, problem: problem)
    }

    private func cleanUp() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        unlinkat(directoryFD, temporaryName, 0)
        buffer = []
    }

    private func append<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { buffer.append(contentsOf: $0) }
    }

    private func appendString(_ s: String) {
        append(UInt64(s.utf8.count))
        buffer.append(contentsOf: s.utf8)
    }

    private func appendValue(_ value: GGUFValue) {
        switch value {
        case let .uint8(v): append(v)
        case let .int8(v): append(v)
        case let .uint16(v): append(v)
        case let .int16(v): append(v)
        case let .uint32(v): append(v)
        case let .int32(v): append(v)
        case let .uint64(v): append(v)
        case let .int64(v): append(v)
        case let .float32(v): append(v.bitPattern)
        case let .float64(v): append(v.bitPattern)
        case let .bool(v): append(UInt8(v ? 1 : 0))
        case let .string(s): appendString(s)
        case let .array(a): appendArray(a)
        }
    }

    private func appendArray(_ a: GGUFArray) {
        append(a.elementType.rawValue)
        append(UInt64(a.count))
        switch a {
        case let .uint8(items): buffer.append(contentsOf: items)
        case let .int8(items): for v in items { append(v) }
        case let .uint16(items): for v in items { append(v) }
        case let .int16(items): for v in items { append(v) }
        case let .uint32(items): for v in items { append(v) }
        case let .int32(items): for v in items { append(v) }
        case let .uint64(items): for v in items { append(v) }
        case let .int64(items): for v in items { append(v) }
        case let .float32(items): for v in items { append(v.bitPattern) }
        case let .float64(items): for v in items { append(v.bitPattern) }
        case let .bool(items): for v in items { append(UInt8(v ? 1 : 0)) }
        case let .string(items): for s in items { appendString(s) }
        case let .array(items): for inner in items { appendArray(inner) }
        }
    }

    /// Zero bytes up to the next multiple of the alignment (the data section starts aligned, so
    /// file offsets and data offsets agree modulo the alignment).
    private func appendPadding() {
        let position = flushed + buffer.count
        let padded = (position + alignment - 1) / alignment * alignment
        buffer.append(contentsOf: repeatElement(0, count: padded - position))
    }

    private func flushIfFull() throws(GGUFWriteError) {
        if buffer.count >= Self.bufferCapacity { try flush() }
    }

    private func flush() throws(GGUFWriteError) {
        let pending = buffer
        try pending.span.withUnsafeBytes { (raw) throws(GGUFWriteError) in try writeAll(raw) }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Writes `bytes` through the buffer, or directly when they are large.
    private func write(_ bytes: RawSpan) throws(GGUFWriteError) {
        if buffer.count + bytes.byteCount <= Self.bufferCapacity {
            bytes.withUnsafeBytes { buffer.append(contentsOf: $0) }
            return
        }
        try flush()
        try bytes.withUnsafeBytes { (raw) throws(GGUFWriteError) in try writeAll(raw) }
    }

    private func writeAll(_ raw: UnsafeRawBufferPointer) throws(GGUFWriteError) {
        guard var p = raw.baseAddress else { return }
        var left = raw.count
        while left > 0 {
            let n = POSIX.write(fd, p, min(left, 1 << 30))
            if n < 0 {
                let code = POSIX.errorNumber
                if code == EINTR { continue }
                throw failure(.writeFailed(offset: flushed, reason: POSIX.message(code)))
            }
            if n == 0 { throw failure(.writeFailed(offset: flushed, reason: "the system wrote no bytes")) }
            p += n
            left -= n
            flushed += n
        }
    }
}
