import Dispatch
import Foundation
import GemmaModel
import GemmaQuant

/// The type `gemma-quantize` converts a model's matrices to. Norm weights (1-D) stay f32.
public enum QuantizationTarget: String, CaseIterable, Sendable {
    case q8_0, q4_0, f16, bf16, f32

    /// Storage of 2-D tensors.
    public var tensorType: GGMLType {
        switch self {
        case .q8_0: return .q8_0
        case .q4_0: return .q4_0
        case .f16: return .f16
        case .bf16: return .bf16
        case .f32: return .f32
        }
    }

    /// llama.cpp's `general.file_type` (enum llama_ftype).
    public var fileType: UInt32 {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .q4_0: return 2
        case .q8_0: return 7
        case .bf16: return 32
        }
    }
}

/// Where a conversion stands, reported after each piece of work.
public struct ConversionProgress: Sendable {
    public var tensorIndex: Int
    public var tensorCount: Int
    public var tensorName: String
    public var bytesWritten: Int
    public var totalBytes: Int
    public var elapsed: Double

    /// Output bytes per second so far.
    public var rate: Double { elapsed > 0 ? Double(bytesWritten) / elapsed : 0 }
    /// Seconds left at the current rate.
    public var secondsLeft: Double { rate > 0 ? Double(totalBytes - bytesWritten) / rate : 0 }
}

/// Errors of a conversion that are about its inputs rather than a file format.
public enum ConversionError: Error, CustomStringConvertible, Equatable {
    case notAGemmaCheckpoint(path: String, reason: String)
    case quantizedInput(path: String, tensor: String, type: String)
    case missingTokenizer(path: String)
    case cancelled

    public var description: String {
        switch self {
        case let .notAGemmaCheckpoint(path, reason):
            return "\(path): not a Gemma checkpoint: \(reason)"
        case let .quantizedInput(path, tensor, type):
            return "\(path): tensor '\(tensor)' is already \(type); convert from the f32, f16 or bf16 original instead"
        case let .missingTokenizer(path):
            return "\(path): no tokenizer.model (a Hugging Face checkpoint directory needs one)"
        case .cancelled:
            return "conversion cancelled"
        }
    }
}

/// Converts a Hugging Face checkpoint directory or a float GGUF into a GGUF with llama.cpp's
/// Gemma conventions, one tensor at a time in chunks of rows: memory stays bounded whatever the
/// model's size, the rows of a chunk are encoded on all cores, and the output appears only
/// when complete (written to a temporary file, then renamed).
public struct GGUFConverter: Sendable {
    public let inputPath: String
    public let source: TensorSource
    /// Tokenizer metadata to write.
    let tokenizerEntries: [(String, GGUFValue)]
    /// Model name for `general.name`.
    let modelName: String

    /// Opens `input`: a checkpoint directory (config.json, safetensors, tokenizer.model) or a
    /// `.gguf` file with f32/f16/bf16 tensors.
    public init(input: String) throws {
        inputPath = input
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) else {
            throw CheckpointError.unreadable(file: input, reason: "no such file or directory")
        }
        let url = URL(fileURLWithPath: input)
        if isDirectory.boolValue {
            source = try SafetensorsCheckpoint(directory: input)
            let tokenizerPath = url.appendingPathComponent("tokenizer.model").path
            guard let bytes = FileManager.default.contents(atPath: tokenizerPath) else {
                throw ConversionError.missingTokenizer(path: input)
            }
            tokenizerEntries = try GGUFTokenizerMetadata.entries(fromModel: [UInt8](bytes), source: tokenizerPath,
                                                                 vocabularySize: source.config.vocabularySize)
            modelName = url.lastPathComponent
        } else {
            let checkpoint: GGUFCheckpoint
            do {
                checkpoint = try GGUFCheckpoint(path: input)
            } catch let error as GGUFError {
                throw ConversionError.notAGemmaCheckpoint(path: input, reason: "\(error)")
            }
            for info in checkpoint.file.tensors where ![.f32, .f16, .bf16].contains(info.type) {
                throw ConversionError.quantizedInput(path: input, tensor: info.name, type: info.type.name)
            }
            source = checkpoint
            tokenizerEntries = GGUFTokenizerMetadata.entries(of: checkpoint.file)
            modelName = (try? checkpoint.file.string(GemmaGGUFNames.Key.name)) ?? url.deletingPathExtension().lastPathComponent
        }
    }

    /// One output tensor: its Hugging Face and GGUF names, PyTorch shape and storage type.
    struct Plan {
        let hfName: String
        let ggufName: String
        let shape: [Int]
        let type: GGMLType
    }

    /// The storage of each tensor for `target`: 1-D tensors f32; 2-D tensors the target type,
    /// or f16 where rows are not whole blocks (as llama.cpp's converter falls back).
    func plans(_ target: QuantizationTarget) -> [Plan] {
        let config = source.config
        return GemmaGGUFNames.hfTensorNames(layerCount: config.layerCount).map { name in
            let shape = GemmaGGUFNames.shape(of: name, config: config)
            var type = shape.count == 1 ? .f32 : target.tensorType
            if shape.last! % type.blockSize != 0 { type = .f16 }
            return Plan(hfName: name, ggufName: GemmaGGUFNames.ggufName(forHF: name)!, shape: shape, type: type)
        }
    }

    func metadata(_ target: QuantizationTarget) throws -> GGUFMetadata {
        typealias Key = GemmaGGUFNames.Key
        let c = source.config
        /// A config size as a u32 (`GemmaConfig.validate`'s limits keep them far below).
        func u32(_ key: String, _ value: Int) throws -> GGUFValue {
            guard let v = UInt32(exactly: value) else {
                throw CheckpointError.invalidConfigField(file: inputPath, field: key, detail: "\(value) does not fit in a u32")
            }
            return .uint32(v)
        }
        var entries: [(String, GGUFValue)] = [
            (Key.architecture, .string(GemmaGGUFNames.architecture)),
            (Key.name, .string(modelName)),
            (Key.contextLength, try u32(Key.contextLength, c.contextLength)),
            (Key.embeddingLength, try u32(Key.embeddingLength, c.hiddenSize)),
            (Key.blockCount, try u32(Key.blockCount, c.layerCount)),
            (Key.feedForwardLength, try u32(Key.feedForwardLength, c.intermediateSize)),
            (Key.headCount, try u32(Key.headCount, c.headCount)),
            (Key.headCountKV, try u32(Key.headCountKV, c.kvHeadCount)),
            (Key.rmsEpsilon, .float32(c.rmsNormEpsilon)),
            (Key.keyLength, try u32(Key.keyLength, c.headDim)),
            (Key.valueLength, try u32(Key.valueLength, c.headDim)),
        ]
        if c.ropeTheta != 10_000 { entries.append((Key.ropeFreqBase, .float32(c.ropeTheta))) }
        entries.append((Key.fileType, .uint32(target.fileType)))
        if target == .q8_0 || target == .q4_0 { entries.append((Key.quantizationVersion, .uint32(2))) }
        return GGUFMetadata(entries + tokenizerEntries)
    }

    /// Writes `output` as `target`. `progress` is called after every chunk; `isCancelled` is
    /// polled as often, and a cancelled conversion leaves no output.
    public func convert(to output: String, target: QuantizationTarget,
                        threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                        progress: (ConversionProgress) -> Void = { _ in },
                        isCancelled: () -> Bool = { false }) throws {
        try convert(target: target, threads: threads, progress: progress, isCancelled: isCancelled) { metadata, tensors in
            try GGUFWriter(path: output, metadata: metadata, tensors: tensors)
        }
    }

    /// Writes the file `name` in the directory open as `directory` (see `GGUFWriter`'s
    /// `init(directory:name:path:metadata:tensors:)`: nothing is looked up by path, so the
    /// output cannot be redirected by a directory swapped for a symbolic link meanwhile);
    /// `displayPath` names it in errors. Otherwise as `convert(to:target:threads:progress:isCancelled:)`.
    public func convert(directory: Int32, name: String, displayPath: String, target: QuantizationTarget,
                        threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                        progress: (ConversionProgress) -> Void = { _ in },
                        isCancelled: () -> Bool = { false }) throws {
        try convert(target: target, threads: threads, progress: progress, isCancelled: isCancelled) { metadata, tensors in
            try GGUFWriter(directory: directory, name: name, path: displayPath, metadata: metadata, tensors: tensors)
        }
    }

    private func convert(target: QuantizationTarget, threads: Int, progress: (ConversionProgress) -> Void,
                         isCancelled: () -> Bool,
                         makeWriter: (GGUFMetadata, [GGUFTensorDeclaration]) throws -> GGUFWriter) throws {
        let plans = plans(target)
        let writer = try makeWriter(try metadata(target),
                                    plans.map { GGUFTensorDeclaration(name: $0.ggufName, dimensions: $0.shape.reversed(), type: $0.type) })
        var finished = false
        defer { if !finished { writer.abort() } }
        let total = writer.tensors.reduce(0) { $0 + $1.byteCount }
        let start = Date()
        var written = 0
        for (index, plan) in plans.enumerated() {
            let raw = try source.rawTensor(plan.hfName, shape: plan.shape)
            guard [.f32, .f16, .bf16].contains(raw.type) else {
                throw ConversionError.quantizedInput(path: inputPath, tensor: plan.hfName, type: raw.type.name)
            }
            let addOne = GemmaGGUFNames.isNorm(plan.hfName) && !source.normWeightsIncludeOne
            try convertTensor(raw, plan: plan, addOne: addOne, threads: threads, writer: writer) { bytes in
                if isCancelled() { throw ConversionError.cancelled }
                written += bytes
                progress(ConversionProgress(tensorIndex: index + 1, tensorCount: plans.count, tensorName: plan.ggufName,
                                            bytesWritten: written, totalBytes: total, elapsed: Date().timeIntervalSince(start)))
            }
        }
        try writer.finish()
        finished = true
    }

    /// Streams one tensor in chunks of rows: decode to f32, add 1 to norms, encode in parallel,
    /// append to the file, and drop the consumed input pages from memory.
    private func convertTensor(_ raw: RawTensor, plan: Plan, addOne: Bool, threads: Int, writer: GGUFWriter,
                               chunkWritten: (Int) throws -> Void) throws {
        let rowLength = plan.shape.last!
        let rows = plan.shape.count == 1 ? 1 : plan.shape[0]
        let inputRowBytes = rowLength * raw.type.bytesPerBlock
        let outputRowBytes = plan.type.rowBytes(rowLength)
        let chunkRows = max(1, min(rows, (16 << 20) / max(1, rowLength)))  // ~64 MB of f32
        let floats = UnsafeMutablePointer<Float>.allocate(capacity: chunkRows * rowLength)
        let encoded = UnsafeMutableRawPointer.allocate(byteCount: chunkRows * outputRowBytes, alignment: 64)
        defer {
            floats.deallocate()
            encoded.deallocate()
        }
        var firstRow = 0
        while firstRow < rows {
            let count = min(chunkRows, rows - firstRow)
            let input = UnsafeRawBufferPointer(rebasing: raw.bytes[firstRow * inputRowBytes..<(firstRow + count) * inputRowBytes])
            let parts = min(max(1, threads), count)
            let perPart = (count + parts - 1) / parts
            let failure = ErrorBox()
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                let begin = part * perPart, end = min(count, begin + perPart)
                guard begin < end else { return }
                do {
                    let n = (end - begin) * rowLength
                    var values = MutableSpan(_unsafeElements: UnsafeMutableBufferPointer(start: floats + begin * rowLength, count: n))
                    let source = UnsafeRawBufferPointer(rebasing: input[begin * inputRowBytes..<end * inputRowBytes])
                    try raw.type.decode(source.bytes, into: &values)
                    if addOne { for i in 0..<n { floats[begin * rowLength + i] += 1 } }
                    for r in begin..<end {
                        let row = Span(_unsafeElements: UnsafeBufferPointer(start: floats + r * rowLength, count: rowLength))
                        var target = MutableRawSpan(_unsafeBytes: UnsafeMutableRawBufferPointer(
                            start: encoded + r * outputRowBytes, count: outputRowBytes))
                        try plan.type.encode(row, into: &target)
                    }
                } catch {
                    failure.set(error)
                }
            }
            if let error = failure.error { throw error }
            try writer.appendTensorBytes(plan.ggufName, bytes: UnsafeRawBufferPointer(start: encoded, count: count * outputRowBytes).bytes)
            releasePages(input)
            try chunkWritten(count * outputRowBytes)
            firstRow += count
        }
    }
}

/// Holds the first error thrown by parallel work.
final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var error: Error?

    func set(_ error: Error) {
        lock.lock()
        defer { lock.unlock() }
        if self.error == nil { self.error = error }
    }
}

/// Tells the kernel the mapped input pages are no longer needed, so a conversion's resident
/// memory does not grow with the input file.
func releasePages(_ buffer: UnsafeRawBufferPointer) {
    guard let base = buffer.baseAddress, buffer.count > 0 else { return }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let start = (Int(bitPattern: base) + page - 1) / page * page
    let end = (Int(bitPattern: base) + buffer.count) / page * page
    guard end > start else { return }
    madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED)
}
