import Foundation
import GemmaWire

/// The folder a quantizer service reads checkpoints from and writes GGUF files to; every
/// path a client gives is relative to it and must stay inside it.
///
/// Paths are checked as bytes (`RelativePath`: no empty path, no leading '/', no NUL, no "."
/// or ".." component, whatever combining marks follow) and then opened component by component
/// from a descriptor of the folder with `O_NOFOLLOW` (`ConfinedWalk`): symbolic links that stay
/// inside are followed, links that lead outside are refused with INVALID_ARGUMENT naming the
/// path, and a folder swapped for a link while a job runs cannot redirect it. Inputs are held
/// open from the check to the conversion; outputs are written relative to their folder's
/// descriptor and renamed into place there. Files with more than one hard link are refused as
/// inputs and as outputs to replace (a hard link may share a file outside the folder).
public struct ModelsDirectory: Sendable {
    /// The folder's real path (symbolic links resolved), without a trailing slash.
    public let root: String
    private let handle: Descriptor
    private let walk: ConfinedWalk

    /// Name of the job journal inside the folder; no job may write it.
    public static let journalName = ".gemma-quantize-jobs.json"

    /// Entries of an input checkpoint folder beyond which it is refused.
    static let maxFolderEntries = 10_000

    /// The folder at `path`, which must exist.
    ///
    /// - Throws: `ModelsDirectoryError` when `path` is not an existing directory.
    public init(path: String) throws {
        guard let resolved = realpath(path, nil) else {
            throw ModelsDirectoryError(path: path, problem: "no such directory")
        }
        let real = String(cString: resolved)
        free(resolved)
        let fd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw ModelsDirectoryError(path: path, problem: errno == ENOTDIR ? "not a directory" : String(cString: strerror(errno)))
        }
        handle = Descriptor(fd)
        root = real == "/" ? "" : real
        var given = Array(path.utf8)
        while given.count > 1, given.last == 0x2F { given.removeLast() }
        let spellings = given.first == 0x2F && given != Array(root.utf8) ? [Array(root.utf8), given] : [Array(root.utf8)]
        walk = ConfinedWalk(rootFD: fd, rootPaths: spellings)
    }

    /// The absolute path of the journal.
    public var journalPath: String { root + "/" + Self.journalName }

    /// The absolute path of `relative` (not resolved: for messages and the journal).
    public func absolute(_ relative: String) -> String { root + "/" + relative }

    /// The checkpoint directory or GGUF file at `relative`, checked and held open: it exists,
    /// it and (for a directory) each file in it are inside the folder and have one hard link.
    ///
    /// - Throws: `RPCError` INVALID_ARGUMENT naming `field` and the path.
    public func input(_ relative: String, field: String = "input_path") throws(RPCError) -> StagedInput {
        let path = try RelativePath(relative, field: field)
        let opened: (fd: Int32, chain: [Int32])
        do {
            opened = try walk.open(path.components)
        } catch {
            throw refusal(field, relative, error, missing: "no such file or directory in the models directory")
        }
        let (fd, chain) = opened
        defer { walk.close(chain) }
        let staged: StagedInput
        do {
            staged = try StagedInput(name: path.components.last!)
        } catch {
            walk.close([fd])
            throw .internal("\(field) '\(relative)': cannot prepare the input: \(error)")
        }
        var status = stat()
        fstat(fd, &status)
        switch status.st_mode & S_IFMT {
        case S_IFREG:
            try checkLinks(status, field, relative, what: "")
            staged.add(fd, as: nil)
        case S_IFDIR:
            defer { walk.close([fd]) }
            try staged.makeFolder()
            for entry in try entries(of: fd, field, relative) {
                let what = "its file '\(String(decoding: entry, as: UTF8.self))'"
                let file: Int32
                do {
                    file = try walk.open(entry, in: fd, chain: chain)
                } catch .missing {
                    continue  // a dangling link is never read
                } catch {
                    throw refusal(field, relative, error, missing: "", what: what)
                }
                var entryStatus = stat()
                fstat(file, &entryStatus)
                guard entryStatus.st_mode & S_IFMT == S_IFREG else {
                    walk.close([file])
                    continue
                }
                do {
                    try checkLinks(entryStatus, field, relative, what: what + " ")
                } catch {
                    walk.close([file])
                    throw error
                }
                staged.add(file, as: entry)
            }
        default:
            walk.close([fd])
            throw .invalidArgument("\(field) '\(relative)': is neither a regular file nor a folder")
        }
        return staged
    }

    /// The GGUF file to write at `relative`, checked: its folder exists inside the models
    /// directory (held open), and the name is not a directory, a link, a special file, a file
    /// with several hard links, or the journal; it exists only when `overwrite`.
    ///
    /// - Throws: `RPCError` INVALID_ARGUMENT naming `field` and the path, or ALREADY_EXISTS
    ///   when the file exists and `overwrite` is false.
    public func output(_ relative: String, overwrite: Bool, field: String = "output_path") throws(RPCError) -> OutputTarget {
        let path = try RelativePath(relative, field: field)
        let parent: (fd: Int32, name: [UInt8])
        do {
            parent = try walk.openParent(path.components)
        } catch {
            let folder = String(decoding: Array(path.components.dropLast().joined(separator: [0x2F])), as: UTF8.self)
            throw refusal(field, relative, error, missing: "the folder '\(folder)' does not exist in the models directory; create it first")
        }
        let (folder, name) = parent
        let target = OutputTarget(folder: folder, name: name, displayPath: absolute(relative))
        var rootStatus = stat(), folderStatus = stat()
        fstat(handle.fd, &rootStatus)
        fstat(folder, &folderStatus)
        if rootStatus.st_dev == folderStatus.st_dev, rootStatus.st_ino == folderStatus.st_ino, name == Array(Self.journalName.utf8) {
            throw .invalidArgument("\(field) '\(relative)': that is the service's job journal")
        }
        guard let status = target.status() else { return target }  // does not exist yet
        switch status.st_mode & S_IFMT {
        case S_IFDIR: throw .invalidArgument("\(field) '\(relative)': is a directory; name the .gguf file to write")
        case S_IFLNK: throw .invalidArgument("\(field) '\(relative)': is a symbolic link; outputs are renamed into place, which would replace the link, so name a regular file")
        case S_IFREG: break
        default: throw .invalidArgument("\(field) '\(relative)': is not a regular file")
        }
        guard overwrite else {
            throw RPCError(.alreadyExists, "\(field) '\(relative)': the file exists; set overwrite to replace it, or choose another name")
        }
        try checkLinks(status, field, relative, what: "")
        return target
    }

    /// The folder `relative`'s output goes into, open, and its name (nil when it cannot be
    /// reached inside the models directory): for removing a killed job's temporary files.
    func outputFolder(_ relative: String) -> (fd: Int32, name: [UInt8])? {
        guard let path = try? RelativePath(relative, field: "output_path") else { return nil }
        return try? walk.openParent(path.components)
    }

    /// Refuses a file with more than one hard link.
    private func checkLinks(_ status: stat, _ field: String, _ relative: String, what: String) throws(RPCError) {
        guard status.st_nlink <= 1 else {
            throw .invalidArgument("\(field) '\(relative)': \(what)has \(status.st_nlink) hard links; a hard link may share a file outside the models directory, so files with more than one are refused (copy the file instead)")
        }
    }

    /// The names in the folder `fd` (without "." and ".."), at most `maxFolderEntries`.
    private func entries(of fd: Int32, _ field: String, _ relative: String) throws(RPCError) -> [[UInt8]] {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0, let stream = fdopendir(copy) else {
            throw .internal("\(field) '\(relative)': cannot list the folder: \(String(cString: strerror(errno)))")
        }
        defer { closedir(stream) }
        var names: [[UInt8]] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            if name == [0x2E] || name == [0x2E, 0x2E] { continue }
            names.append(name)
            guard names.count <= Self.maxFolderEntries else {
                throw .invalidArgument("\(field) '\(relative)': the folder has more than \(Self.maxFolderEntries) entries")
            }
        }
        return names.sorted { $0.lexicographicallyPrecedes($1) }
    }

    private func refusal(_ field: String, _ relative: String, _ failure: ConfinedWalk.Failure, missing: String,
                         what: String = "") -> RPCError {
        let subject = what.isEmpty ? "" : what + " "
        switch failure {
        case .missing: return .invalidArgument("\(field) '\(relative)': \(subject)\(missing)")
        case .notADirectory: return .invalidArgument("\(field) '\(relative)': \(subject)a component that should be a folder is not one")
        case .escapes(let target): return .invalidArgument("\(field) '\(relative)': \(subject)leads outside the models directory (to \(target)) through a symbolic link")
        case .tooManyLinks: return .invalidArgument("\(field) '\(relative)': \(subject)more than 40 symbolic links on the way")
        case .system(let code): return .invalidArgument("\(field) '\(relative)': \(subject)\(String(cString: strerror(code)))")
        }
    }
}

/// A file descriptor closed when the last reference goes.
final class Descriptor: @unchecked Sendable {
    let fd: Int32
    init(_ fd: Int32) { self.fd = fd }
    deinit { close(fd) }
}

/// A models directory that cannot be used.
public struct ModelsDirectoryError: Error, CustomStringConvertible {
    /// The path given.
    public let path: String
    /// What is wrong with it.
    public let problem: String

    public var description: String { "models directory \(path): \(problem)" }
}
