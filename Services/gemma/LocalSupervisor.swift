import Foundation
import GemmaCluster
#if canImport(Glibc)
import Glibc
#endif

/// Runs the processes of a `LocalClusterPlan`: starts them, forwards their output line by line
/// with their names, waits for the router's /health, restarts any service that dies (the
/// router too: a restarted router frees what its predecessor left on the stages), up to
/// `maxRestarts` times each, and on SIGINT or SIGTERM stops the router first, then the
/// workers (SIGTERM, then SIGKILL after 15 s).
final class LocalSupervisor: @unchecked Sendable {
    /// A service and its current process (`process` and `restarts` are guarded by the
    /// supervisor's lock: termination handlers and delayed restarts run on other threads).
    final class Child {
        let service: LocalClusterPlan.Service
        let executable: URL
        var process: Process?
        var restarts = 0

        init(service: LocalClusterPlan.Service, executable: URL) {
            self.service = service
            self.executable = executable
        }
    }

    /// Restarts of one service before the supervisor gives up on it (and stops the cluster).
    static let maxRestarts = 5

    let children: [Child]
    let restartServices: Bool
    private let lock = NSLock()
    private var stopping = false
    private var ready = false
    private var failure: String?
    private let wake = DispatchSemaphore(value: 0)
    private var signalSources: [DispatchSourceSignal] = []

    init(plan: LocalClusterPlan, binDirectory: URL, restartServices: Bool) throws {
        children = try plan.services.map { service in
            let executable = binDirectory.appendingPathComponent(service.executable)
            guard FileManager.default.isExecutableFile(atPath: executable.path) else {
                throw ClusterLaunchError("\(service.executable) is not in \(binDirectory.path) beside gemma; build every product (swift build -c release)")
            }
            return Child(service: service, executable: executable)
        }
        self.restartServices = restartServices
    }

    /// Runs until a signal, or until the router exits; returns the exit status for `gemma`.
    func run(healthHost host: String, port: Int, startupTimeout: Double, onReady: () -> Void) -> Int32 {
        for signal in [SIGINT, SIGTERM] {
            Glibc.signal(signal, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signal, queue: .global())
            source.setEventHandler { [weak self] in self?.requestStop(nil) }
            source.resume()
            signalSources.append(source)
        }
        for child in children where child.service.isWorker { start(child) }
        for child in children where !child.service.isWorker { start(child) }

        let deadline = Date().addingTimeInterval(startupTimeout)
        let probeHost = host == "0.0.0.0" ? "127.0.0.1" : host
        while !isStopping {
            if Self.httpStatus(host: probeHost, port: port, path: "/health") == 200 {
                lock.withLock { ready = true }
                onReady()
                break
            }
            if Date() > deadline {
                requestStop("the router's /health did not answer 200 within \(Int(startupTimeout)) s")
                break
            }
            _ = wake.wait(timeout: .now() + .milliseconds(250))
        }
        while !isStopping { wake.wait() }
        shutdown()
        let failure = lock.withLock { self.failure }
        if let failure {
            log("cluster", "stopped: \(failure)")
            return 1
        }
        log("cluster", "stopped")
        return 0
    }

    var isStopping: Bool { lock.withLock { stopping } }

    /// Asks the run loop to stop everything (a nil reason is a normal stop).
    func requestStop(_ reason: String?) {
        lock.withLock {
            if !stopping, failure == nil { failure = reason }
            stopping = true
        }
        wake.signal()
    }

    func start(_ child: Child) {
        let process = Process()
        process.executableURL = child.executable
        process.arguments = child.service.arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        let name = child.service.name
        let lines = LineSplitter()
        output.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard !data.isEmpty else {
                handle.readabilityHandler = nil
                if let rest = lines.flush() { self?.log(name, rest) }
                return
            }
            for line in lines.feed(data) { self?.log(name, line) }
        }
        process.terminationHandler = { [weak self] process in self?.exited(child, process) }
        do {
            try process.run()
            lock.withLock { child.process = process }
        } catch {
            requestStop("cannot start \(child.executable.path): \(error)")
        }
    }

    func exited(_ child: Child, _ process: Process) {
        let (stopping, ready) = lock.withLock { (self.stopping, self.ready) }
        guard !stopping else { return }
        let how = process.terminationReason == .uncaughtSignal ? "was killed by signal \(process.terminationStatus)"
                                                                : "exited with status \(process.terminationStatus)"
        let restart: Int? = lock.withLock {
            guard ready, restartServices, child.restarts < Self.maxRestarts else { return nil }
            child.restarts += 1
            return child.restarts
        }
        guard let restart else {
            let limit = ready && restartServices ? " (restarted \(Self.maxRestarts) times already)" : ""
            requestStop("\(child.service.name) \(how)\(limit)")
            return
        }
        log("cluster", "\(child.service.name) \(how); restarting it in 1 s (restart \(restart) of \(Self.maxRestarts))")
        DispatchQueue.global().asyncAfter(deadline: .now() + 1) { [weak self] in
            guard let self, !self.isStopping else { return }
            self.start(child)
        }
    }

    /// SIGTERM to the router, then to the workers; SIGKILL to whatever is left after 15 s.
    func shutdown() {
        for group in [children.filter { !$0.service.isWorker }, children.filter(\.service.isWorker)] {
            let running = lock.withLock { group.compactMap(\.process) }.filter(\.isRunning)
            for process in running { process.terminate() }
            let deadline = Date().addingTimeInterval(15)
            while running.contains(where: \.isRunning), Date() < deadline { usleep(50_000) }
            for process in running where process.isRunning { kill(process.processIdentifier, SIGKILL) }
            for process in running { process.waitUntilExit() }
        }
    }

    private let logLock = NSLock()

    func log(_ name: String, _ line: String) {
        logLock.withLock { FileHandle.standardError.write(Data("\(name.padding(toLength: 10, withPad: " ", startingAt: 0)) | \(line)\n".utf8)) }
    }

    /// "host:port" split, or nil.
    static func hostPort(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
            return nil
        }
        return (String(text[..<colon]), port)
    }

    /// The status code of `GET path` on host:port (HTTP/1.0 over a plain socket), or nil.
    static func httpStatus(host: String, port: Int, path: String) -> Int? {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let info = result else { return nil }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else { return nil }
        let request = Array("GET \(path) HTTP/1.0\r\nHost: \(host)\r\n\r\n".utf8)
        guard send(fd, request, request.count, Int32(MSG_NOSIGNAL)) == request.count else { return nil }
        var response = [UInt8](repeating: 0, count: 64)
        let count = recv(fd, &response, response.count, 0)
        guard count > 12 else { return nil }
        // "HTTP/1.1 200 OK"
        let line = String(decoding: response[0..<count], as: UTF8.self)
        let parts = line.split(separator: " ")
        return parts.count >= 2 ? Int(parts[1]) : nil
    }
}

/// Splits a child's output into lines (one reader at a time).
final class LineSplitter: @unchecked Sendable {
    private var buffer = Data()

    /// The whole lines completed by `data`.
    func feed(_ data: Data) -> [String] {
        buffer.append(data)
        var lines: [String] = []
        while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
            lines.append(String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self))
            buffer.removeSubrange(buffer.startIndex...newline)
        }
        return lines
    }

    /// The unfinished last line, if any.
    func flush() -> String? {
        defer { buffer.removeAll() }
        return buffer.isEmpty ? nil : String(decoding: buffer, as: UTF8.self)
    }
}

/// A cluster that cannot be started, with the reason.
struct ClusterLaunchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
