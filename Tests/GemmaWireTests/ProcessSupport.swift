import Foundation
import XCTest

/// Built executables of this package, found next to the test bundle (both live in the
/// build's products folder; `swift build --build-tests` builds them).
enum BuiltProducts {
    static var folder: URL {
        let bundle = Bundle.main.bundleURL
        for candidate in [bundle, bundle.deletingLastPathComponent()]
        where FileManager.default.isExecutableFile(atPath: candidate.appendingPathComponent("gemma-tokenizer").path) {
            return candidate
        }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }

    /// The executable called `name`, or a skip saying how to build it.
    static func executable(_ name: String) throws -> URL {
        let url = folder.appendingPathComponent(name)
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw XCTSkip("\(name) is not built next to the tests (\(folder.path)); run `swift build --build-tests` first")
        }
        return url
    }

    /// `name` on PATH, if any.
    static func onPath(_ name: String) -> URL? {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let url = URL(fileURLWithPath: String(directory)).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        return nil
    }
}

/// Collects a pipe's output as it arrives.
final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()

    init(_ pipe: Pipe) {
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
        lock.lock()
        data.append(chunk)
        lock.unlock()
    }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }
}

/// A `gemma-tokenizer` process serving the test tokenizer.
final class TokenizerProcess: @unchecked Sendable {
    let process: Process
    let log: OutputCollector
    /// The URLs it listens on, as it logged them (real ports for tcp://...:0).
    private(set) var urls: [String] = []

    init(listen: [String], extraArguments: [String] = []) throws {
        process = Process()
        process.executableURL = try BuiltProducts.executable("gemma-tokenizer")
        process.arguments = ["--model", WireFixtures.tokenizerModelPath] + listen.flatMap { ["--listen", $0] } + extraArguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        log = OutputCollector(errors)
        try process.run()
    }

    /// Waits until it logs that it listens, and reads its URLs from that line.
    func waitUntilListening(timeout: Duration = .seconds(30)) async throws {
        try await waitForLog("] listening", timeout: timeout)
        let line = log.text.split(separator: "\n").first { $0.hasSuffix("] listening") } ?? ""
        let field = line.split(separator: " ").first { $0.hasPrefix("urls=") } ?? ""
        urls = field.dropFirst("urls=".count).split(separator: ",").map(String.init)
        XCTAssertFalse(urls.isEmpty, "no urls= in \(line)")
    }

    /// Waits until the log contains `text`; fails early if the process exits.
    func waitForLog(_ text: String, timeout: Duration = .seconds(30)) async throws {
        let giveUp = ContinuousClock.now + timeout
        while !log.text.contains(text) {
            if !process.isRunning {
                throw TimedOut(what: "\"\(text)\" in the log; gemma-tokenizer exited with \(process.terminationStatus):\n\(log.text)")
            }
            guard ContinuousClock.now < giveUp else { throw TimedOut(what: "\"\(text)\" in the log:\n\(log.text)") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    func signal(_ signal: Int32) {
        Glibc.kill(process.processIdentifier, signal)
    }

    /// Waits for the process to exit and returns its status.
    func waitForExit(timeout: Duration = .seconds(30)) async throws -> Int32 {
        let giveUp = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < giveUp else {
                signal(SIGKILL)
                throw TimedOut(what: "gemma-tokenizer to exit:\n\(log.text)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        return process.terminationStatus
    }

    /// Kills it if it still runs (test teardown).
    func stop() {
        if process.isRunning {
            signal(SIGKILL)
            process.waitUntilExit()
        }
    }
}
