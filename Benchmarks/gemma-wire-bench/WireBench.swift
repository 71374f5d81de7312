import ArgumentParser
import CNNG
import Foundation
import GemmaWire
import Logging

/// `gemma-wire-bench`: round trips of a fixed payload through RPCClient and RPCServer, with the
/// server in a child process (this executable's `serve` subcommand), as services run; and the
/// same round trip with nng's blocking C calls and no RPC layer, as the baseline.
@main
struct WireBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemma-wire-bench",
        abstract: "Measure RPC round trips (latency p50/p99, requests/s) over ipc:// and tcp:// loopback.",
        subcommands: [Run.self, Serve.self],
        defaultSubcommand: Run.self)
}

/// The echo method the benchmark calls.
let echoMethod = "bench.v1.Echo/Echo"

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Start an echo server process and measure calls to it (the default).")

    @Option(help: "Request (and reply) payload size in bytes.")
    var payloadBytes = 12 * 1024

    @Option(parsing: .upToNextOption, help: "Transports to measure: ipc, tcp, inproc (inproc runs the server in this process).")
    var transports: [String] = ["ipc", "tcp"]

    @Option(parsing: .upToNextOption, help: "Concurrent callers on one client socket, one measurement each.")
    var concurrency: [Int] = [1, 16]

    @Option(help: "Seconds each measurement runs.")
    var seconds = 3.0

    @Option(help: "Measurements per configuration; the report gives their median.")
    var repeats = 3

    @Flag(inversion: .prefixedNo, help: "Also measure one caller with nng's blocking C calls and no RPC layer.")
    var baseline = true

    func validate() throws {
        guard payloadBytes >= 0, seconds > 0, repeats > 0, concurrency.allSatisfy({ $0 > 0 }) else {
            throw ValidationError("sizes, seconds, repeats and concurrency must be positive")
        }
        for transport in transports where !["ipc", "tcp", "inproc"].contains(transport) {
            throw ValidationError("unknown transport \(transport) (ipc, tcp or inproc)")
        }
    }

    func run() async throws {
        print("gemma-wire-bench: \(payloadBytes)-byte request and reply, \(seconds) s per run, median of \(repeats) runs")
        print("transport  path     callers   p50 (us)   p99 (us)   requests/s")
        let payload = (0 ..< payloadBytes).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        for transport in transports {
            let url = Self.url(transport, "rpc")
            let stop = try startServer(url, raw: false)
            let client = try RPCClient(url: url, configuration: .init(retry: .never))
            // Warm up the connection and both processes.
            _ = try await measure(callers: 4, seconds: 0.5) { try await echo(client, payload) }
            var rpcSingle: Double?
            for callers in concurrency {
                let result = try await median(of: repeats) {
                    try await measure(callers: callers, seconds: seconds) { try await echo(client, payload) }
                }
                if callers == 1 { rpcSingle = result.p50 }
                report(transport, "rpc", callers, result)
            }
            client.close()
            stop()

            if baseline {
                let rawURL = Self.url(transport, "raw")
                let stopRaw = try startServer(rawURL, raw: true)
                let result = try await median(of: repeats) {
                    try await measureBlocking(url: rawURL, payload: payload, seconds: seconds)
                }
                stopRaw()
                report(transport, "raw nng", 1, result)
                if let rpcSingle {
                    print(String(format: "%@: rpc p50 / raw nng p50 = %.2f", transport, rpcSingle / result.p50))
                }
            }
        }
    }

    static func url(_ transport: String, _ name: String) -> String {
        switch transport {
        case "inproc": return "inproc://gemma-wire-bench-\(name)"
        case "ipc": return "ipc://\(NSTemporaryDirectory())gemma-wire-bench-\(getpid())-\(name).ipc"
        default: return "tcp://127.0.0.1:\(Int.random(in: 20000 ..< 60000))"
        }
    }

    func report(_ transport: String, _ path: String, _ callers: Int, _ result: Measurement) {
        func padded(_ text: String, _ width: Int) -> String {
            text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0)
        }
        print(padded(transport, 9) + "  " + padded(path, 7)
              + String(format: "  %7d  %9.1f  %9.1f  %11.0f", callers, result.p50, result.p99, result.rate))
    }

    struct Measurement {
        var p50: Double
        var p99: Double
        var rate: Double

        init(latencies: [Double], seconds: Double) {
            let sorted = latencies.sorted()
            func percentile(_ p: Double) -> Double {
                sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
            }
            p50 = percentile(0.50)
            p99 = percentile(0.99)
            rate = Double(sorted.count) / seconds
        }
    }

    /// Each figure is the median over `count` runs.
    func median(of count: Int, _ run: () async throws -> Measurement) async throws -> Measurement {
        var runs: [Measurement] = []
        for _ in 0 ..< count { runs.append(try await run()) }
        func middle(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        var result = runs[0]
        result.p50 = middle(runs.map(\.p50))
        result.p99 = middle(runs.map(\.p99))
        result.rate = middle(runs.map(\.rate))
        return result
    }

    func echo(_ client: RPCClient, _ payload: [UInt8]) async throws {
        let reply = try await client.callRaw(echoMethod, payload: payload, deadline: .after(.seconds(10)))
        guard reply.count == payload.count else { throw ValidationError("echo returned \(reply.count) bytes") }
    }

    /// `callers` tasks repeat `call` for `seconds`; latencies in microseconds.
    func measure(callers: Int, seconds: Double, _ call: @escaping @Sendable () async throws -> Void) async throws -> Measurement {
        let clock = ContinuousClock()
        let start = clock.now
        let end = start + .milliseconds(Int64(seconds * 1000))
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for _ in 0 ..< callers {
                group.addTask {
                    var samples: [Double] = []
                    while clock.now < end {
                        let begin = clock.now
                        try await call()
                        samples.append(microseconds(clock.now - begin))
                    }
                    return samples
                }
            }
            var all: [Double] = []
            for try await samples in group { all += samples }
            return all
        }
        return Measurement(latencies: latencies, seconds: inSeconds(clock.now - start))
    }

    /// One caller with nng's blocking `nng_send`/`nng_recv` on a plain REQ socket, on a thread
    /// of its own.
    func measureBlocking(url: String, payload: [UInt8], seconds: Double) async throws -> Measurement {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Measurement, Error>) in
            Thread {
                var socket = nng_socket()
                guard nng_req0_open(&socket) == 0 else {
                    return continuation.resume(throwing: ValidationError("nng_req0_open failed"))
                }
                defer { nng_close(socket) }
                _ = gemma_nng_set_recv_max_size(socket, 64 << 20)
                _ = gemma_nng_dial_nonblocking(socket, url, nil)
                var payload = payload
                var latencies: [Double] = []
                let clock = ContinuousClock()
                let start = clock.now
                let end = start + .milliseconds(Int64(seconds * 1000))
                while clock.now < end {
                    let begin = clock.now
                    var reply: UnsafeMutableRawPointer?
                    var length = 0
                    let sent = payload.withUnsafeMutableBytes { nng_send(socket, $0.baseAddress, $0.count, 0) }
                    let received = withUnsafeMutablePointer(to: &reply) {
                        nng_recv(socket, UnsafeMutableRawPointer($0), &length, Int32(NNG_FLAG_ALLOC))
                    }
                    guard sent == 0, received == 0, length == payload.count else {
                        return continuation.resume(throwing: ValidationError("raw nng round trip failed: \(sent) \(received)"))
                    }
                    nng_free(reply, length)
                    latencies.append(microseconds(clock.now - begin))
                }
                continuation.resume(returning: Measurement(latencies: latencies, seconds: inSeconds(clock.now - start)))
            }.start()
        }
    }

    /// Starts an echo server at `url`: a child process for ipc and tcp, in this process for
    /// inproc. Returns a function that stops it.
    func startServer(_ url: String, raw: Bool) throws -> () -> Void {
        if url.hasPrefix("inproc://") {
            if raw {
                try RawEcho.start(url: url)
                return {}
            }
            let server = makeEchoServer(url: url)
            try server.start()
            let task = Task { try await server.run() }
            return { task.cancel() }
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        process.arguments = ["serve", "--url", url] + (raw ? ["--raw"] : [])
        let ready = Pipe()
        process.standardOutput = ready
        try process.run()
        // The child prints one line once it listens.
        _ = ready.fileHandleForReading.availableData
        return {
            process.terminate()
            process.waitUntilExit()
        }
    }
}

func microseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1e6 + Double(duration.components.attoseconds) / 1e12
}

func inSeconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

func makeEchoServer(url: String) -> RPCServer {
    var logger = Logger(label: "gemma.wire.bench")
    logger.logLevel = .warning
    let server = RPCServer(url: url, logger: logger)
    server.registerRaw(echoMethod) { payload, _ in payload }
    return server
}

/// A REP socket echoing every message with nng's blocking calls, on a thread of its own.
enum RawEcho {
    static func start(url: String) throws {
        var socket = nng_socket()
        guard nng_rep0_open(&socket) == 0, gemma_nng_set_recv_max_size(socket, 64 << 20) == 0,
              nng_listen(socket, url, nil, 0) == 0 else {
            throw ValidationError("cannot listen on \(url)")
        }
        let listening = socket
        Thread {
            while true {
                var message: OpaquePointer?
                guard nng_recvmsg(listening, &message, 0) == 0 else { return }
                guard nng_sendmsg(listening, message, 0) == 0 else {
                    nng_msg_free(message)
                    return
                }
            }
        }.start()
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Serve the echo method at --url (started by `run`).")

    @Option(help: "Where to listen.")
    var url: String

    @Flag(help: "Echo with nng's blocking calls and no RPC layer (the baseline).")
    var raw = false

    func run() async throws {
        if raw {
            try RawEcho.start(url: url)
            print("listening on \(url)")
            fflush(stdout)
            while true { try await Task.sleep(for: .seconds(3600)) }
        }
        let server = makeEchoServer(url: url)
        try server.start()
        print("listening on \(server.boundURLs.joined(separator: " "))")
        fflush(stdout)
        let stop = DispatchSource.makeSignalSource(signal: SIGTERM)
        signal(SIGTERM, SIG_IGN)
        stop.setEventHandler { server.shutdownGracefully() }
        stop.resume()
        try await server.run()
    }
}
