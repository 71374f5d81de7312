import ArgumentParser
import Foundation
import GemmaWire
import Logging

/// `gemma-wire-bench`: round trips of a fixed payload through RPCClient and RPCServer, with the
/// server in a child process (this executable's `serve` subcommand), as services run.
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
        print("transport  callers   p50 (us)   p99 (us)   requests/s")
        for transport in transports {
            let (url, stop) = try await startServer(transport)
            defer { stop() }
            let client = try RPCClient(url: url, configuration: .init(retry: .never))
            defer { client.close() }
            let payload = (0 ..< payloadBytes).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            // Warm up the connection and both processes.
            _ = try await measure(client, payload: payload, callers: 4, seconds: 0.5)
            for callers in concurrency {
                var runs: [Measurement] = []
                for _ in 0 ..< repeats {
                    runs.append(try await measure(client, payload: payload, callers: callers, seconds: seconds))
                }
                func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
                print(String(format: "%-9@  %7d  %9.1f  %9.1f  %11.0f", transport, callers,
                             median(runs.map(\.p50)), median(runs.map(\.p99)), median(runs.map(\.rate))))
            }
        }
    }

    struct Measurement {
        var p50: Double
        var p99: Double
        var rate: Double
    }

    /// `callers` tasks call echo in a loop for `seconds`; latencies in microseconds.
    func measure(_ client: RPCClient, payload: [UInt8], callers: Int, seconds: Double) async throws -> Measurement {
        let clock = ContinuousClock()
        let start = clock.now
        let end = start + .milliseconds(Int64(seconds * 1000))
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for _ in 0 ..< callers {
                group.addTask {
                    var samples: [Double] = []
                    while clock.now < end {
                        let begin = clock.now
                        let reply = try await client.callRaw(echoMethod, payload: payload, deadline: .after(.seconds(10)))
                        let elapsed = clock.now - begin
                        guard reply.count == payload.count else { throw ValidationError("echo returned \(reply.count) bytes") }
                        samples.append(Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12)
                    }
                    return samples
                }
            }
            var all: [Double] = []
            for try await samples in group { all += samples }
            return all.sorted()
        }
        let wall = clock.now - start
        let wallSeconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
        func percentile(_ p: Double) -> Double {
            latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]
        }
        return Measurement(p50: percentile(0.50), p99: percentile(0.99), rate: Double(latencies.count) / wallSeconds)
    }

    /// Starts the echo server for `transport`: a child process for ipc and tcp, in process for inproc.
    func startServer(_ transport: String) async throws -> (String, () -> Void) {
        if transport == "inproc" {
            let url = "inproc://gemma-wire-bench"
            let server = makeEchoServer(url: url)
            try server.start()
            let task = Task { try await server.run() }
            return (url, { task.cancel() })
        }
        let url = transport == "ipc"
            ? "ipc://\(NSTemporaryDirectory())gemma-wire-bench-\(getpid()).ipc"
            : "tcp://127.0.0.1:\(Int.random(in: 20000 ..< 60000))"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        process.arguments = ["serve", "--url", url]
        let ready = Pipe()
        process.standardOutput = ready
        try process.run()
        // The child prints one line once it listens.
        _ = ready.fileHandleForReading.availableData
        return (url, {
            process.terminate()
            process.waitUntilExit()
        })
    }
}

func makeEchoServer(url: String) -> RPCServer {
    var logger = Logger(label: "gemma.wire.bench")
    logger.logLevel = .warning
    let server = RPCServer(url: url, logger: logger)
    server.registerRaw(echoMethod) { payload, _ in payload }
    return server
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Serve the echo method at --url (started by `run`).")

    @Option(help: "Where to listen.")
    var url: String

    func run() async throws {
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
