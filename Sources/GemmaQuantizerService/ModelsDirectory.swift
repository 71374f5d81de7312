import Foundation
import GemmaWire

/// The folder a quantizer service reads checkpoints from and writes GGUF files to; every
/// path a client gives is relative to it and must stay inside it.
///
/// Refused, with INVALID_ARGUMENT naming the path: empty paths, absolute paths, `..`
/// components, and paths whose real location (symbolic links resolved) is outside the folder,
/// including a file of an input checkpoint directory that links outside.
public struct ModelsDirectory: Sendable {
    /// The folder's real path (symbolic links resolved), without a trailing slash.
    public let root: String

    /// Name of the job journal inside the folder; no job may write it.
    public static let journalName = ".gemma-quantize-jobs.json"

    /// The folder at `path`, which must exist.
    ///
    /// - Throws: `ModelsDirectoryError` when `path` is not an existing directory.
    public init(path: String) throws {
        guard let real = Self.realPath(path) else {
            throw ModelsDirectoryError(path: path, problem: "no such directory")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: real, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ModelsDirectoryError(path: path, problem: "not a directory")
        }
        root = real == "/" ? "" : real
    }

    /// The absolute path of the journal.
    public var journalPath: String { root + "/" + Self.journalName }

    /// The absolute path of `relative` (not resolved; the caller checked it).
    public func absolute(_ relative: String) -> String { root + "/" + relative }

    /// The checkpoint directory or file at `relative`, checked: it exists, and it and (for a
    /// directory) each file in it are inside the folder.
    ///
    /// - Throws: `RPCError` INVALID_ARGUMENT naming `field` and the path.
    public func input(_ relative: String, field: String = "input_path") throws(RPCError) -> String {
        try checkSyntax(relative, field: field)
        let path = absolute(relative)
        guard let real = Self.realPath(path) else {
            throw .invalidArgument("\(field) '\(relative)': no such file or directory in the models directory")
        }
        guard isInside(real) else {
            throw .invalidArgument("\(field) '\(relative)': leads outside the models directory (to \(real)) through a symbolic link")
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: real, isDirectory: &isDirectory), isDirectory.boolValue {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: real)) ?? []
            for entry in entries.sorted() {
                guard let target = Self.realPath(real + "/" + entry) else { continue }  // a dangling link is never read
                guard isInside(target) else {
                    throw .invalidArgument("\(field) '\(relative)': its file '\(entry)' leads outside the models directory (to \(target)) through a symbolic link")
                }
            }
        }
        return path
    }

    /// The GGUF file to write at `relative`, checked: its folder exists inside the models
    /// directory, it is not a directory or the journal, and it exists only when `overwrite`.
    ///
    /// - Throws: `RPCError` INVALID_ARGUMENT naming `field` and the path, or ALREADY_EXISTS
    ///   when the file exists and `overwrite` is false.
    public func output(_ relative: String, overwrite: Bool, field: String = "output_path") throws(RPCError) -> String {
        try checkSyntax(relative, field: field)
        let path = absolute(relative)
        let folder = (path as NSString).deletingLastPathComponent
        guard let realFolder = Self.realPath(folder) else {
            let name = (relative as NSString).deletingLastPathComponent
            throw .invalidArgument("\(field) '\(relative)': the folder '\(name)' does not exist in the models directory; create it first")
        }
        guard isInside(realFolder) else {
            throw .invalidArgument("\(field) '\(relative)': leads outside the models directory (to \(realFolder)) through a symbolic link")
        }
        let file = realFolder + "/" + (path as NSString).lastPathComponent
        guard file != journalPath else {
            throw .invalidArgument("\(field) '\(relative)': that is the service's job journal")
        }
        var status = stat()
        guard lstat(file, &status) == 0 else { return file }  // does not exist yet
        if status.st_mode & S_IFMT == S_IFLNK {
            guard let target = Self.realPath(file), isInside(target) else {
                throw .invalidArgument("\(field) '\(relative)': is a symbolic link that leads outside the models directory or nowhere")
            }
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory), isDirectory.boolValue {
            throw .invalidArgument("\(field) '\(relative)': is a directory; name the .gguf file to write")
        }
        guard overwrite else {
            throw RPCError(.alreadyExists, "\(field) '\(relative)': the file exists; set overwrite to replace it, or choose another name")
        }
        return file
    }

    /// Refuses what no lookup is needed to refuse: empty, absolute, `..`, too long, NUL.
    private func checkSyntax(_ relative: String, field: String) throws(RPCError) {
        guard !relative.isEmpty else {
            throw .invalidArgument("\(field) is empty; give a path relative to the models directory")
        }
        guard !relative.hasPrefix("/") else {
            throw .invalidArgument("\(field) '\(relative)': absolute paths are refused; give a path relative to the models directory")
        }
        guard !relative.split(separator: "/", omittingEmptySubsequences: false).contains("..") else {
            throw .invalidArgument("\(field) '\(relative)': '..' is refused; paths stay inside the models directory")
        }
        guard relative.utf8.count <= Self.maxPathBytes else {
            throw .invalidArgument("\(field) is \(relative.utf8.count) bytes long; the limit is \(Self.maxPathBytes)")
        }
        guard !relative.utf8.contains(0) else {
            throw .invalidArgument("\(field) '\(relative)': contains a NUL byte")
        }
    }

    /// Longest path accepted (Linux's PATH_MAX).
    static let maxPathBytes = 4096

    private func isInside(_ real: String) -> Bool {
        real == root || real.hasPrefix(root + "/")
    }

    /// `realpath(3)`: the absolute path with every symbolic link resolved; nil when some part
    /// does not exist.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

/// A models directory that cannot be used.
public struct ModelsDirectoryError: Error, CustomStringConvertible {
    /// The path given.
    public let path: String
    /// What is wrong with it.
    public let problem: String

    public var description: String { "models directory \(path): \(problem)" }
}
