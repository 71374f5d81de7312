#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Small wrappers over the C library used by `GGUFFile` and `GGUFWriter`.
enum POSIX {
    /// The system's message for `code` ("No such file or directory", …).
    static func message(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "error \(code)" }
        return String(cString: text)
    }

    /// write(2): bytes written, or -1 with `errno` set.
    static func write(_ fd: Int32, _ p: UnsafeRawPointer, _ count: Int) -> Int {
        #if canImport(Glibc)
        return Glibc.write(fd, p, count)
        #elseif canImport(Musl)
        return Musl.write(fd, p, count)
        #else
        return Darwin.write(fd, p, count)
        #endif
    }

    /// The current `errno`.
    static var errorNumber: Int32 { errno }

    /// The directory part of `path` ("." when there is none).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// The last component of `path`.
    static func lastComponent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// Whether `path` is a directory, or the `errno` of inspecting it.
    static func isDirectory(_ path: String) -> Result<Bool, Errno> {
        var st = stat()
        guard stat(path, &st) == 0 else { return .failure(Errno(code: errno)) }
        return .success((st.st_mode & S_IFMT) == S_IFDIR)
    }

    /// An `errno` value.
    struct Errno: Error {
        var code: Int32
        var missing: Bool { code == ENOENT || code == ENOTDIR }
    }
}
