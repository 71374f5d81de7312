import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// SplitMix64: a small, seeded generator, so that a failing fuzz run can be repeated exactly.
struct FuzzRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Raw HTTP/1.1 over a blocking TCP socket to 127.0.0.1, for requests no well-behaved client
/// would send: any bytes, half-sent bodies, stalls. Run it off Swift concurrency's threads.
struct FuzzHTTP {
    struct Reply {
        var status: Int
        var headers: [String: String]
        var body: Data
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let port: Int
    var timeoutSeconds = 30

    /// One request: the head (Host and Connection: close added), then `body` with a
    /// Content-Length of its size unless `contentLength` says otherwise.
    func send(_ method: String, _ path: String, body: [UInt8]? = nil, contentLength: String? = nil,
              extraHeaders: String = "") throws -> Reply {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + extraHeaders
        if let body {
            head += "Content-Type: application/json\r\nContent-Length: \(contentLength ?? String(body.count))\r\n"
        }
        return try exchange(Array((head + "\r\n").utf8) + (body ?? []))
    }

    /// Writes `bytes`, then reads until the server closes, and parses the answer. A write the
    /// server refuses part-way (it answered early and closed) is not an error: the answer counts.
    func exchange(_ bytes: [UInt8], thenHalfClose: Bool = false) throws -> Reply {
        let socket = try connect()
        defer { close(socket) }
        _ = write(socket, bytes)
        // For requests the server may still be waiting to complete: our end of sending says so.
        if thenHalfClose { shutdown(socket, Int32(SHUT_WR)) }
        return try Self.parse(readAll(socket))
    }

    func connect() throws -> Int32 {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket() failed") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            close(fd)
            throw Failure(description: "cannot connect to 127.0.0.1:\(port): the server is gone")
        }
        return fd
    }

    /// Sends as much of `bytes` as the peer takes; false when it stopped taking them.
    @discardableResult
    func write(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return false }
            sent += n
        }
        return true
    }

    /// Everything until the peer closes (a reset after an answer keeps what came).
    func readAll(_ fd: Int32) throws -> Data {
        var raw = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n == 0 { break }
            if n < 0 {
                if errno == ECONNRESET, !raw.isEmpty { break }
                throw Failure(description: "no complete answer within \(timeoutSeconds) s (errno \(errno), \(raw.count) bytes)")
            }
            raw.append(contentsOf: buffer[0..<n])
        }
        return raw
    }

    /// True when the server closed `fd` (reads 0 or a reset) within `seconds`.
    func closedByServer(_ fd: Int32, within seconds: Int) -> Bool {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0 { continue }   // an answer (e.g. a 4xx) before closing is fine
            return n == 0 || errno == ECONNRESET
        }
    }

    static func parse(_ raw: Data) throws -> Reply {
        guard let split = raw.range(of: Data("\r\n\r\n".utf8)) else {
            throw Failure(description: "no HTTP head in \(raw.count) bytes: \(String(decoding: raw.prefix(200), as: UTF8.self))")
        }
        let lines = String(decoding: raw[..<split.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw Failure(description: "bad status line: \(lines[0].prefix(200))")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { throw Failure(description: "bad header line: \(line.prefix(200))") }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Data(raw[split.upperBound...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            var decoded = Data()
            var rest = body[...]
            while let lineEnd = rest.range(of: Data("\r\n".utf8)) {
                let sizeText = String(decoding: rest[..<lineEnd.lowerBound], as: UTF8.self).split(separator: ";").first ?? ""
                guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else {
                    throw Failure(description: "bad chunk size \(sizeText.prefix(40))")
                }
                if size == 0 { break }
                let start = lineEnd.upperBound
                guard rest.distance(from: start, to: rest.endIndex) >= size + 2 else { throw Failure(description: "truncated chunk") }
                decoded.append(rest[start..<rest.index(start, offsetBy: size)])
                rest = rest[rest.index(start, offsetBy: size + 2)...]
            }
            body = decoded
        } else if let length = headers["content-length"].flatMap(Int.init), length != body.count {
            throw Failure(description: "Content-Length \(length) but \(body.count) body bytes")
        }
        return Reply(status: status, headers: headers, body: body)
    }
}

/// Runs blocking work on a thread of its own, never on one of Swift concurrency's few threads
/// (the server under test needs them).
func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}
