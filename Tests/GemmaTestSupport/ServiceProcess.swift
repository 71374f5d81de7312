import Foundation
#if canImport(Glibc)
import Glibc
#endif
import XCTest

/// Built executables of this package, found next to the test bundle (both live in the
/// build's products folder; `swift build --build-tests` builds them).
public enum BuiltProducts {
    public static var folder: URL {
        let bundle = Bundle.main.bundleURL
        for candidate in [bundle, bundle.deletingLastPathComponent()]
        where FileManager.default.isExecutableFile(atPath: candidate.appendingPathComponent("gemma-tokenizer").path) {
            return candidate
        }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }

    /// The executable called `name`, or a skip saying how to build it.
    public static func executable(_ name: String) throws -> URL {
        let url = folder.appendingPathComponent(name)
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw XCTSkip("\(name) is not built next to the tests (\(folder.path)); run `swift build --build-tests` first")
        }
        return url
    }

    /// `name` on PATH, if any.
    public static func onPath(_ name: String) -> URL? {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let url = URL(fileURLWithPath: String(directory)).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        return nil
    }
}

/// Collects a pipe's output as it arrives.
public final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()

    public init(_ pipe: Pipe) {
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let chunk = handle.availableData
            if chunk.isEmpty {
                handle.readabilityHandler = nil
                return
            }
            self?.append(chunk)
        }
    }

    private func append(_ chunk: Data) {
        lock.withLock { data.append(chunk) }
    }

    public var text: String {
        lock.withLock { String(decoding: data, as: UTF8.self) }
    }
}

/// A process of one of the package's executables (gemma-shard, gemma-tokenizer, gemma-router,
/// ...), its output collected.
public final class ServiceProcess: @unchecked Sendable {
    public let name: String
    public let process: Process
    public let log: OutputCollector
    /// The URLs it listens on, as it logged them (real ports for tcp://...:0).
    public private(set) var urls: [String] = []

    public init(_ executable: String, _ arguments: [String]) throws {
        name = executable
        process = Process()
        process.executableURL = try BuiltProducts.executable(executable)
        process.arguments = arguments
        let output = Pipe()
        process.standardError = output
        process.standardOutput = output
        log = OutputCollector(output)
        try process.run()
    }

    public var pid: Int32 { process.processIdentifier }

    /// Waits until the log contains `text`; fails early if the process exits.
    public func waitForLog(_ text: String, timeout: Duration = .seconds(30)) async throws {
        let giveUp = ContinuousClock.now + timeout
        while !log.text.contains(text) {
            if !process.isRunning {
                throw TimedOut(what: "\"\(text)\" in the log; \(name) exited with \(process.terminationStatus):\n\(log.text)")
            }
            guard ContinuousClock.now < giveUp else { throw TimedOut(what: "\"\(text)\" in the log of \(name):\n\(log.text)") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Waits until it logs that it listens, and reads its URLs from that line.
    public func waitUntilListening(timeout: Duration = .seconds(30)) async throws {
        try await waitForLog("] listening", timeout: timeout)
        let line = log.text.split(separator: "\n").first { $0.hasSuffix("] listening") } ?? ""
        let field = line.split(separator: " ").first { $0.hasPrefix("urls=") } ?? ""
        urls = field.dropFirst("urls=".count).split(separator: ",").map(String.init)
        XCTAssertFalse(urls.isEmpty, "no urls= in \(line)")
    }

    public func signal(_ signal: Int32) {
        Glibc.kill(process.processIdentifier, signal)
    }

    /// Waits for the process to exit and returns its status.
    public func waitForExit(timeout: Duration = .seconds(30)) async throws -> Int32 {
        let giveUp = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < giveUp else {
                signal(SIGKILL)
                throw TimedOut(what: "\(name) to exit:\n\(log.text)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        // Let the pipe deliver the last lines.
        try await Task.sleep(for: .milliseconds(20))
        return process.terminationStatus
    }

    /// Kills it if it still runs (test teardown).
    public func stop() {
        if process.isRunning {
            signal(SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// Something a test waited for in vain.
public struct TimedOut: Error, CustomStringConvertible {
    public let what: String
    public init(what: String) { self.what = what }
    public var description: String { "timed out waiting for \(what)" }
}

/// Connects to 127.0.0.1:`port`, writes `bytes`, closes; on a background thread (blocking calls).
public func sendOverTCP(port: Int, _ bytes: [UInt8]) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        DispatchQueue.global().async {
            defer { continuation.resume() }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return }
            defer { close(fd) }
            var timeout = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else { return }
            _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
    }
}

/// A small seeded generator, so a failing run can be repeated from its seed.
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func bytes(_ count: Int) -> [UInt8] {
        (0 ..< count).map { _ in UInt8(truncatingIfNeeded: next()) }
    }
}

/// A thread-safe counter for unique names.
public final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    public init() {}

    public func next() -> Int {
        lock.withLock {
            value += 1
            return value
        }
    }

    /// The last value `next` returned (0 before the first).
    public var current: Int { lock.withLock { value } }
}

/// Waits (polling, at most `timeout`) until `condition` holds.
public func waitUntil(_ what: String, timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    let giveUp = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < giveUp else { throw TimedOut(what: what) }
        try await Task.sleep(for: .milliseconds(5))
    }
}
