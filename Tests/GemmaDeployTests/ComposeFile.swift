import Foundation
import GemmaTestSupport
import XCTest

/// Paths of the deployment files.
enum DeployFiles {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // GemmaDeployTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()
    static let composeFile = packageRoot.appendingPathComponent("compose/docker-compose.yml").path
    static let clusterConfig = packageRoot.appendingPathComponent("compose/cluster.json").path
    static let dockerfile = packageRoot.appendingPathComponent("compose/Dockerfile").path
}

/// A finished command: its exit status and output.
struct ToolRun {
    var status: Int32
    var stdout: String
    var stderr: String

    /// Runs `executable` with `arguments` (and `input` on standard input) to the end.
    static func run(_ executable: URL, _ arguments: [String], input: Data? = nil,
                    environment: [String: String]? = nil) throws -> ToolRun {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        let stdout = Pipe(), stderr = Pipe(), stdin = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = stdin
        let out = OutputCollector(stdout), err = OutputCollector(stderr)
        try process.run()
        if let input { stdin.fileHandleForWriting.write(input) }
        try stdin.fileHandleForWriting.close()
        process.waitUntilExit()
        // Let the pipes deliver the last bytes.
        Thread.sleep(forTimeInterval: 0.1)
        return ToolRun(status: process.terminationStatus, stdout: out.text, stderr: err.text)
    }
}

/// The compose file as Compose itself reads it: `docker-compose config` (variables at their
/// defaults, paths resolved, values in their long forms), converted to JSON with PyYAML (which
/// Debian's docker-compose depends on).
struct ComposeFile {
    /// One service, with the fields the deployment checks look at.
    struct Service {
        var name: String
        var command: [String]
        /// Ports open on the compose network (`expose`).
        var expose: [Int]
        /// Ports published on the host: (host port, container port).
        var published: [(host: Int?, container: Int)]
        /// Mounts: (source, target, read-only); a named volume's source is its name.
        var volumes: [(source: String, target: String, readOnly: Bool)]
        /// Services it waits for, with the condition.
        var dependsOn: [String: String]
        var healthcheck: [String]
        var profiles: [String]

        /// The value after `flag` in the command, if any.
        func argument(_ flag: String) -> String? {
            guard let i = command.firstIndex(of: flag), i + 1 < command.count else { return nil }
            return command[i + 1]
        }

        /// The mount whose target is `path`, if any.
        func mount(at path: String) -> (source: String, target: String, readOnly: Bool)? {
            volumes.first { $0.target == path }
        }
    }

    var services: [String: Service]
    var namedVolumes: [String]

    /// `docker-compose`, or a skip saying how to get it.
    static func dockerCompose() throws -> URL {
        guard let url = BuiltProducts.onPath("docker-compose") else {
            throw XCTSkip("docker-compose is not installed (scripts/setup.sh installs Debian's docker-compose package); the compose file was not checked")
        }
        return url
    }

    /// Runs `docker-compose -f FILE config` with no GEMMA_* variables set (so the defaults
    /// apply); its result, whatever the status.
    static func config(_ file: String = DeployFiles.composeFile) throws -> ToolRun {
        let environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("GEMMA_") }
        return try ToolRun.run(try dockerCompose(), ["-f", file, "config"], environment: environment)
    }

    /// The compose file as `docker-compose config` resolves it.
    static func load() throws -> ComposeFile {
        let config = try Self.config()
        guard config.status == 0 else {
            throw ComposeError(description: "docker-compose config failed (\(config.status)): \(config.stderr)")
        }
        guard let python = BuiltProducts.onPath("python3") else { throw XCTSkip("python3 is not installed") }
        let converted = try ToolRun.run(python, ["-c", "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
                                        input: Data(config.stdout.utf8))
        guard converted.status == 0 else {
            throw XCTSkip("python3 cannot read YAML (PyYAML, Debian's python3-yaml, missing?): \(converted.stderr)")
        }
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(converted.stdout.utf8)) as? [String: Any])
        let services = try XCTUnwrap(json["services"] as? [String: [String: Any]], "no services in \(converted.stdout)")
        return ComposeFile(services: Dictionary(uniqueKeysWithValues: services.map { ($0.key, Self.service($0.key, $0.value)) }),
                           namedVolumes: Array((json["volumes"] as? [String: Any] ?? [:]).keys))
    }

    private static func service(_ name: String, _ json: [String: Any]) -> Service {
        let command: [String]
        switch json["command"] {
        case let list as [Any]: command = list.map { "\($0)" }
        case let text as String: command = text.split(separator: " ").map(String.init)
        default: command = []
        }
        let expose = (json["expose"] as? [Any] ?? []).compactMap { Int("\($0)") }
        let published: [(host: Int?, container: Int)] = (json["ports"] as? [Any] ?? []).compactMap { port in
            if let long = port as? [String: Any], let target = Int("\(long["target"] ?? "")") {
                return (long["published"].flatMap { Int("\($0)") }, target)
            }
            // Short form "HOST:CONTAINER" or "CONTAINER".
            let parts = "\(port)".split(separator: ":").compactMap { Int($0.split(separator: "/")[0]) }
            guard let container = parts.last else { return nil }
            return (parts.count > 1 ? parts[parts.count - 2] : nil, container)
        }
        let volumes: [(source: String, target: String, readOnly: Bool)] = (json["volumes"] as? [Any] ?? []).compactMap { volume in
            if let long = volume as? [String: Any], let target = long["target"] as? String {
                return ("\(long["source"] ?? "")", target, long["read_only"] as? Bool ?? false)
            }
            let parts = "\(volume)".split(separator: ":").map(String.init)
            guard parts.count >= 2 else { return nil }
            return (parts[0], parts[1], parts.count > 2 && parts[2].split(separator: ",").contains("ro"))
        }
        var dependsOn: [String: String] = [:]
        if let map = json["depends_on"] as? [String: Any] {
            for (other, value) in map { dependsOn[other] = (value as? [String: Any])?["condition"] as? String ?? "service_started" }
        } else {
            for other in json["depends_on"] as? [String] ?? [] { dependsOn[other] = "service_started" }
        }
        let healthcheck = ((json["healthcheck"] as? [String: Any])?["test"] as? [Any] ?? []).map { "\($0)" }
        return Service(name: name, command: command, expose: expose, published: published, volumes: volumes,
                       dependsOn: dependsOn, healthcheck: healthcheck, profiles: json["profiles"] as? [String] ?? [])
    }
}

/// A compose file that Compose refused.
struct ComposeError: Error, CustomStringConvertible {
    let description: String
}

/// "tcp://HOST:PORT" as its parts, or nil for other URLs.
func tcpHostPort(_ url: String) -> (host: String, port: Int)? {
    guard url.hasPrefix("tcp://"), let colon = url.lastIndex(of: ":"),
          let port = Int(url[url.index(after: colon)...]) else { return nil }
    let host = String(url[url.index(url.startIndex, offsetBy: "tcp://".count) ..< colon])
    return host.isEmpty ? nil : (host, port)
}
