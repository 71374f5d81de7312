import Foundation
import GemmaQuant

/// A tensor's bytes as stored, without conversion: its element or block type, its shape in
/// PyTorch order, and an owner that keeps the bytes (usually a memory map) alive.
public struct RawTensor: @unchecked Sendable {
    public let type: GGMLType
    public let shape: [Int]
    public let bytes: UnsafeRawBufferPointer
    public let owner: AnyObject
    /// The bytes are a read-only mapping of a file, so pages that were read can be dropped
    /// from memory and are read again from the file when touched.
    public let isFileMapping: Bool

    public init(type: GGMLType, shape: [Int], bytes: UnsafeRawBufferPointer, owner: AnyObject, isFileMapping: Bool = false) {
        self.type = type
        self.shape = shape
        self.bytes = bytes
        self.owner = owner
        self.isFileMapping = isFileMapping
    }
}

/// Read access to a checkpoint's tensors by their Hugging Face names, in PyTorch dimension
/// order ([out, in] for matrices). Implemented by safetensors directories and GGUF files.
public protocol TensorSource: AnyObject, Sendable {
    /// Where the tensors come from, for messages.
    var description: String { get }
    /// The checkpoint's model configuration.
    var config: GemmaConfig { get }
    /// Whether norm weights are stored as `1 + w` already (GGUF) or as `w` (Hugging Face).
    var normWeightsIncludeOne: Bool { get }
    /// Loads tensor `name` as f32 after checking it has `shape`.
    func loadFloat32(_ name: String, shape: [Int]) throws -> [Float]
    /// Tensor `name` as stored, after checking it has `shape`.
    func rawTensor(_ name: String, shape: [Int]) throws -> RawTensor
}

/// A Hugging Face checkpoint directory: `config.json` plus `model.safetensors`, or several
/// safetensors files listed in `model.safetensors.index.json`. Files are memory-mapped and
/// every header is checked on open; tensor data is read only when asked for.
public final class SafetensorsCheckpoint: TensorSource, @unchecked Sendable {
    public let directory: String
    public let config: GemmaConfig
    public var normWeightsIncludeOne: Bool { false }
    public var description: String { directory }
    /// Tensor name -> the file that holds it.
    private let locations: [String: SafetensorsFile]

    public init(directory: String) throws {
        self.directory = directory
        let dir = URL(fileURLWithPath: directory)
        let configPath = dir.appendingPathComponent("config.json").path
        guard FileManager.default.fileExists(atPath: configPath) else {
            throw CheckpointError.unreadable(file: configPath, reason: "no such file")
        }
        config = try GemmaConfig(contentsOf: configPath)

        let indexPath = dir.appendingPathComponent("model.safetensors.index.json").path
        let singlePath = dir.appendingPathComponent("model.safetensors").path
        var locations: [String: SafetensorsFile] = [:]
        if FileManager.default.fileExists(atPath: indexPath) {
            let weightMap = try Self.readWeightMap(indexPath)
            var files: [String: SafetensorsFile] = [:]
            for (tensor, fileName) in weightMap.sorted(by: { $0.key < $1.key }) {
                guard !fileName.contains("/"), !fileName.hasPrefix(".") else {
                    throw CheckpointError.badIndex(file: indexPath, detail: "weight_map entry '\(fileName)' for '\(tensor)' is not a file name in this directory")
                }
                let file: SafetensorsFile
                if let opened = files[fileName] {
                    file = opened
                } else {
                    file = try SafetensorsFile(path: dir.appendingPathComponent(fileName).path)
                    files[fileName] = file
                }
                guard file.tensors[tensor] != nil else {
                    throw CheckpointError.missingTensor(tensor: tensor, searched: file.path + " (named by model.safetensors.index.json)")
                }
                locations[tensor] = file
            }
        } else if FileManager.default.fileExists(atPath: singlePath) {
            let file = try SafetensorsFile(path: singlePath)
            for name in file.tensors.keys { locations[name] = file }
        } else {
            throw CheckpointError.noWeights(directory: directory)
        }
        self.locations = locations
    }

    private static func readWeightMap(_ path: String) throws -> [String: String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckpointError.unreadable(file: path, reason: "cannot read")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CheckpointError.badIndex(file: path, detail: "not a JSON object")
        }
        guard let map = object["weight_map"] as? [String: String] else {
            throw CheckpointError.badIndex(file: path, detail: "no 'weight_map' object of tensor name -> file name")
        }
        return map
    }

    /// Names of all tensors in the checkpoint.
    public var tensorNames: [String] { locations.keys.sorted() }

    /// Where a tensor lives and how it is stored.
    public func info(_ name: String) throws -> (file: SafetensorsFile, info: SafetensorsTensorInfo) {
        guard let file = locations[name], let info = file.tensors[name] else {
            throw CheckpointError.missingTensor(tensor: name, searched: directory)
        }
        return (file, info)
    }

    /// The tensor's file and info after checking its shape and dtype against the config.
    private func checkedInfo(_ name: String, shape: [Int]) throws -> (file: SafetensorsFile, info: SafetensorsTensorInfo) {
        let (file, info) = try info(name)
        guard info.shape == shape else {
            throw CheckpointError.shapeMismatch(file: file.path, tensor: name, found: info.shape, expected: shape)
        }
        if let declared = config.declaredDType, declared != info.dtype {
            throw CheckpointError.dtypeMismatch(file: file.path, tensor: name, found: info.dtype.rawValue,
                                                expected: declared.rawValue)
        }
        return (file, info)
    }

    public func rawTensor(_ name: String, shape: [Int]) throws -> RawTensor {
        let (file, info) = try checkedInfo(name, shape: shape)
        let type: GGMLType
        switch info.dtype {
        case .f32: type = .f32
        case .f16: type = .f16
        case .bf16: type = .bf16
        }
        return RawTensor(type: type, shape: shape, bytes: file.rawBytes(of: info), owner: file, isFileMapping: true)
    }

    public func loadFloat32(_ name: String, shape: [Int]) throws -> [Float] {
        let raw = try rawTensor(name, shape: shape)
        return try raw.type.decode(raw.bytes.bytes)
    }
}
