import Foundation
import GemmaWire

/// An input checked by `ModelsDirectory.input`, held open until the converter has opened it.
///
/// The converter opens checkpoints by path, so the descriptors are handed to it through a
/// private staging folder (mode 0700, in the system's temporary directory) of symbolic links
/// to `/proc/self/fd/N`: opening them reaches exactly the files that were checked, whatever
/// happens to the models directory meanwhile. The staged entry has the input's own last name
/// (the converter names the model after it), and `release()` closes everything and removes
/// the staging folder (the converter's memory maps stay valid).
public final class StagedInput: @unchecked Sendable {
    /// The path to hand to the converter.
    public let path: String
    private let staging: String
    private var descriptors: [Int32] = []

    init(name: [UInt8]) throws {
        var template = Array((NSTemporaryDirectory() + "/gemma-quantize-input-XXXXXX").utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw RPCError.internal("cannot create a staging folder: \(String(cString: strerror(errno)))")
        }
        staging = String(cString: created)
        path = staging + "/" + String(decoding: name, as: UTF8.self)
    }

    /// Makes the staged entry a folder (for a checkpoint directory).
    func makeFolder() throws(RPCError) {
        guard mkdir(path, 0o700) == 0 else {
            throw .internal("cannot create a staging folder: \(String(cString: strerror(errno)))")
        }
    }

    /// Stages `fd` (now owned here) as the entry itself (`name` nil) or as `name` in its folder.
    func add(_ fd: Int32, as name: [UInt8]?) {
        descriptors.append(fd)
        let link = name.map { Array(path.utf8) + [0x2F] + $0 } ?? Array(path.utf8)
        _ = withCName(Array("/proc/self/fd/\(fd)".utf8)) { target in withCName(link) { symlink(target, $0) } }
    }

    /// `text` with the staged path replaced by `original` (for error messages).
    public func describe(_ text: String, as original: String) -> String {
        text.replacingOccurrences(of: path, with: original)
    }

    /// Closes the descriptors and removes the staging folder.
    public func release() {
        for fd in descriptors { close(fd) }
        descriptors = []
        try? FileManager.default.removeItem(atPath: staging)
    }

    deinit { release() }
}

/// Where a job writes its output: the folder, open (found by `ModelsDirectory.output`), and
/// the file's name in it. The converter creates its temporary file and renames it into place
/// relative to the descriptor, so nothing is looked up by path again.
public final class OutputTarget: @unchecked Sendable {
    /// The folder's descriptor (owned).
    public let folder: Int32
    /// The file's name in it.
    public let name: String
    /// The absolute path, for messages.
    public let displayPath: String
    /// The folder's device and inode and the name: two targets with the same key are one file.
    public let key: String

    init(folder: Int32, name: [UInt8], displayPath: String) {
        self.folder = folder
        self.name = String(decoding: name, as: UTF8.self)
        self.displayPath = displayPath
        var status = stat()
        fstat(folder, &status)
        key = "\(status.st_dev):\(status.st_ino)/" + name.map { String($0, radix: 16) }.joined(separator: ".")
    }

    /// The name's `lstat` in the folder, or nil when nothing has that name.
    func status() -> stat? {
        var status = stat()
        guard fstatat(folder, name, &status, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        return status
    }

    /// Whether something has the name now.
    public var exists: Bool { status() != nil }

    deinit { close(folder) }
}
