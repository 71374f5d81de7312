#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GemmaWire

/// A path a client gave, relative to the models directory, as the bytes of its components.
///
/// The rules work on the UTF-8 bytes split at 0x2F ('/'), never on `Character`s, so a
/// combining mark after '.' or '/' cannot hide a component: "../\u{301}x" has the component
/// ".." and is refused, while ".\u{301}" and "..\u{301}" are ordinary names (the bytes
/// 2E CC 81 and 2E 2E CC 81) of entries inside the directory. No normalisation either: "é" as
/// U+00E9 and as "e" + U+0301 are two different names, as they are to the kernel.
///
/// Refused: an empty path, more than 4096 bytes, a NUL byte, a leading '/', an empty component
/// (a doubled or trailing '/'), a component "." or "..", a component longer than 255 bytes.
struct RelativePath {
    /// The path as given, for messages.
    let text: String
    /// Its components, none empty, "." or "..".
    let components: [[UInt8]]

    /// Longest path accepted (Linux's PATH_MAX) and longest component (NAME_MAX).
    static let maxPathBytes = 4096
    static let maxComponentBytes = 255

    init(_ text: String, field: String) throws(RPCError) {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else {
            throw .invalidArgument("\(field) is empty; give a path relative to the models directory")
        }
        guard bytes.count <= Self.maxPathBytes else {
            throw .invalidArgument("\(field) is \(bytes.count) bytes long; the limit is \(Self.maxPathBytes)")
        }
        guard !bytes.contains(0) else {
            throw .invalidArgument("\(field) '\(text.debugDescription)': contains a NUL byte")
        }
        guard bytes[0] != 0x2F else {
            throw .invalidArgument("\(field) '\(text)': absolute paths are refused; give a path relative to the models directory")
        }
        let components = bytes.split(separator: 0x2F, omittingEmptySubsequences: false).map { Array($0) }
        for component in components {
            if component.isEmpty {
                throw .invalidArgument("\(field) '\(text)': has an empty component (a doubled or trailing '/')")
            }
            if component == [0x2E] {
                throw .invalidArgument("\(field) '\(text)': '.' components are refused; write the path without them")
            }
            if component == [0x2E, 0x2E] {
                throw .invalidArgument("\(field) '\(text)': '..' is refused; paths stay inside the models directory")
            }
            if component.count > Self.maxComponentBytes {
                throw .invalidArgument("\(field) '\(text)': a component is \(component.count) bytes long; the limit is \(Self.maxComponentBytes)")
            }
        }
        self.text = text
        self.components = components
    }
}

/// Opens files and folders below a directory descriptor without ever letting the kernel
/// follow a symbolic link: each component is opened with `openat(O_NOFOLLOW)` relative to the
/// descriptor of the folder before it, and a link met on the way is read and resolved here,
/// confined to the root (an absolute target must name a place inside it, by its real path or
/// the path it was opened by; ".." never rises above it). What is swapped in between two
/// steps is seen by the next step, so no race can lead outside.
struct ConfinedWalk {
    /// The root's descriptor (owned by the caller).
    let rootFD: Int32
    /// Spellings of the root's path that absolute link targets may start with.
    let rootPaths: [[UInt8]]

    /// Why a walk stopped.
    enum Failure: Error {
        /// A component does not exist.
        case missing
        /// A component that should be a folder is not.
        case notADirectory
        /// A symbolic link leads outside the root (its target as text).
        case escapes(String)
        /// More than 40 links followed.
        case tooManyLinks
        /// Another error of the system (errno).
        case system(Int32)
    }

    /// The folder holding the last component, open (the caller closes it), and that component
    /// as given: links are followed for the folders, not for the last component.
    func openParent(_ components: [[UInt8]]) throws(Failure) -> (fd: Int32, name: [UInt8]) {
        var stack = try rootStack()
        let result = try walk(components, openLast: false, stack: &stack)
        close(Array(stack.dropLast()))  // the last is the folder returned
        return result
    }

    /// The file or folder `components` name, open read-only (non-blocking, so a FIFO cannot
    /// hold the caller), following links that stay inside; with the folders that lead to it
    /// from the root, open too (the caller closes them all).
    func open(_ components: [[UInt8]]) throws(Failure) -> (fd: Int32, chain: [Int32]) {
        var stack = try rootStack()
        let (fd, _) = try walk(components, openLast: true, stack: &stack)
        return (fd, stack)
    }

    /// The entry `name` of the folder `folder`, reached through `chain` (as `open` returns
    /// them, left open), opened the same way.
    func open(_ name: [UInt8], in folder: Int32, chain: [Int32]) throws(Failure) -> Int32 {
        var stack: [Int32] = []
        for fd in chain + [folder] {
            let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
            guard copy >= 0 else {
                let error = errno
                close(stack)
                throw .system(error)
            }
            stack.append(copy)
        }
        let (fd, _) = try walk([name], openLast: true, stack: &stack)
        close(stack)
        return fd
    }

    /// Closes descriptors.
    func close(_ fds: [Int32]) {
        for fd in fds { _ = Glibc.close(fd) }
    }

    private func rootStack() throws(Failure) -> [Int32] {
        let first = fcntl(rootFD, F_DUPFD_CLOEXEC, 0)
        guard first >= 0 else { throw .system(errno) }
        return [first]
    }

    /// Walks `components` from the folder on top of `stack` (the folders from the root to it,
    /// open), pushing and popping folders as it goes. On failure the stack is closed and emptied.
    private func walk(_ components: [[UInt8]], openLast: Bool, stack: inout [Int32]) throws(Failure) -> (fd: Int32, name: [UInt8]) {
        func fail(_ failure: Failure) -> Failure {
            close(stack)
            stack = []
            return failure
        }
        var pending = Array(components.reversed())
        var links = 0
        while let component = pending.popLast() {
            if component.isEmpty || component == [0x2E] { continue }  // only from link targets
            if component == [0x2E, 0x2E] {
                guard stack.count > 1 else { throw fail(.escapes("..")) }
                _ = Glibc.close(stack.removeLast())
                continue
            }
            let isLast = pending.isEmpty
            let top = stack[stack.count - 1]
            if isLast && !openLast {
                return (top, component)
            }
            let flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | (isLast ? 0 : O_DIRECTORY)
            let fd = withCName(component) { openat(top, $0, flags) }
            if fd >= 0 {
                if isLast { return (fd, component) }
                stack.append(fd)
                continue
            }
            let error = errno
            if error == ELOOP || error == ENOTDIR, let target = readLink(top, component) {
                links += 1
                guard links <= 40 else { throw fail(.tooManyLinks) }
                var relative = target
                if target.first == 0x2F {
                    guard let inside = insidePart(of: target) else {
                        throw fail(.escapes(String(decoding: target, as: UTF8.self)))
                    }
                    relative = inside
                    close(Array(stack.dropFirst()))
                    stack = [stack[0]]
                }
                pending += relative.split(separator: 0x2F).map { Array($0) }.reversed()
                continue
            }
            switch error {
            case ENOENT: throw fail(.missing)
            case ENOTDIR: throw fail(.notADirectory)
            default: throw fail(.system(error))
            }
        }
        // The path ended in a link to a folder ("." or "..", say): that folder itself.
        guard openLast, stack.count > 1 else {
            // Only the root is left: it is not an entry that can be opened or written.
            throw fail(.escapes("."))
        }
        return (stack.removeLast(), [])
    }

    /// The part of an absolute link target below the root, or nil when it is not inside.
    private func insidePart(of target: [UInt8]) -> [UInt8]? {
        for root in rootPaths {
            if target == root { return [] }
            if target.count > root.count, target[root.count] == 0x2F, target.starts(with: root) {
                return Array(target[(root.count + 1)...])
            }
        }
        return nil
    }

    /// The target of the symbolic link `name` in `directory`, or nil when it is not a link.
    private func readLink(_ directory: Int32, _ name: [UInt8]) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 4097)
        let count = withCName(name) { cName in
            buffer.withUnsafeMutableBytes { readlinkat(directory, cName, $0.baseAddress!.assumingMemoryBound(to: CChar.self), 4096) }
        }
        guard count >= 0 else { return nil }
        return Array(buffer[0 ..< count])
    }
}

/// Calls `body` with `bytes` as a NUL-terminated C string.
func withCName<T>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) -> T) -> T {
    (bytes + [0]).withUnsafeBytes { body($0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
}
