import Foundation
@testable import GemmaWire
import GemmaTestSupport
import XCTest

/// The committed generated code is what the .proto files make, and every rpc has its RPCMethod.
final class ProtoContractTests: XCTestCase {
    let root = WireFixtures.packageRoot

    private func files(in folder: String, ending suffix: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(folder).path)
            .filter { $0.hasSuffix(suffix) }.sorted().map { "\(folder)/\($0)" }
    }

    /// Cheap and always run (CI too): the hashes that scripts/generate-proto.sh recorded still
    /// match the .proto files and the generated code, and name all of them.
    func testGeneratedCodeIsFromTheCurrentProtoFiles() throws {
        let stampPath = "Sources/GemmaWire/Generated/SOURCES.sha256"
        let stamp = try String(contentsOf: root.appendingPathComponent(stampPath), encoding: .utf8)
        var recorded: [String: String] = [:]
        for line in stamp.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            XCTAssertEqual(parts.count, 2, "malformed line in \(stampPath): \(line)")
            if parts.count == 2 { recorded[parts[1].trimmingCharacters(in: .whitespaces)] = String(parts[0]) }
        }
        let expected = try files(in: "Proto/gemma/v1", ending: ".proto")
            + files(in: "Sources/GemmaWire/Generated/gemma/v1", ending: ".pb.swift")
        let regenerate = "run scripts/generate-proto.sh and commit the result"
        XCTAssertEqual(Set(recorded.keys), Set(expected),
                       "the .proto or generated files differ from those \(stampPath) records: \(regenerate)")
        for path in expected {
            let bytes = try [UInt8](Data(contentsOf: root.appendingPathComponent(path)))
            XCTAssertEqual(SHA256.hexDigest(of: bytes), recorded[path],
                           path.hasSuffix(".proto")
                               ? "\(path) changed since Sources/GemmaWire/Generated was generated: \(regenerate)"
                               : "\(path) was edited by hand (it says DO NOT EDIT): \(regenerate)")
        }
    }

    /// Thorough, when the tools are at hand: regenerates into a scratch folder and diffs.
    func testRegeneratingGivesTheCommittedCode() throws {
        guard BuiltProducts.onPath("protoc") != nil else {
            throw XCTSkip("protoc not found (apt-get install protobuf-compiler); the SOURCES.sha256 check still ran")
        }
        var environment = ProcessInfo.processInfo.environment
        if environment["PROTOC_GEN_SWIFT"] == nil {
            let built = BuiltProducts.folder.appendingPathComponent("protoc-gen-swift")
            if let onPath = BuiltProducts.onPath("protoc-gen-swift") {
                environment["PROTOC_GEN_SWIFT"] = onPath.path
            } else if FileManager.default.isExecutableFile(atPath: built.path) {
                environment["PROTOC_GEN_SWIFT"] = built.path
            } else {
                throw XCTSkip("""
                    protoc-gen-swift is not built, so the generated code was not regenerated and diffed \
                    (the SOURCES.sha256 check still ran). To enable: swift build --product protoc-gen-swift \
                    with the same --scratch-path, or set PROTOC_GEN_SWIFT; or run scripts/check-proto.sh
                    """)
            }
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [root.appendingPathComponent("scripts/check-proto.sh").path]
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, text)
    }

    /// Every `rpc` in Proto/gemma/v1 has an `RPCMethod` with the same name and message types,
    /// and there are no others.
    func testEveryRPCHasItsMethod() throws {
        var declared: [String] = []
        let rpc = try NSRegularExpression(pattern: #"rpc\s+(\w+)\s*\(\s*(\w+)\s*\)\s*returns\s*\(\s*(\w+)\s*\)"#)
        let service = try NSRegularExpression(pattern: #"service\s+(\w+)\s*\{([^}]*)\}"#)
        for path in try files(in: "Proto/gemma/v1", ending: ".proto") {
            let text = try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
            XCTAssertTrue(text.contains("package gemma.v1;"), path)
            let whole = NSRange(text.startIndex..., in: text)
            for match in service.matches(in: text, range: whole) {
                let name = String(text[Range(match.range(at: 1), in: text)!])
                let body = String(text[Range(match.range(at: 2), in: text)!])
                for method in rpc.matches(in: body, range: NSRange(body.startIndex..., in: body)) {
                    let part = { (index: Int) in String(body[Range(method.range(at: index), in: body)!]) }
                    declared.append("gemma.v1.\(name)/\(part(1)) gemma.v1.\(part(2)) gemma.v1.\(part(3))")
                }
            }
        }
        let swift = allGemmaRPCMethods.map { "\($0.name) \($0.request) \($0.response)" }
        XCTAssertEqual(declared.sorted(), swift.sorted())
        XCTAssertEqual(declared.count, 12)
    }

    func testStatusCodesHaveGRPCNumbers() {
        let codes: [(RPCStatusCode, Int)] = [(.ok, 0), (.cancelled, 1), (.unknown, 2), (.invalidArgument, 3),
                                             (.deadlineExceeded, 4), (.notFound, 5), (.alreadyExists, 6),
                                             (.permissionDenied, 7), (.resourceExhausted, 8), (.failedPrecondition, 9),
                                             (.aborted, 10), (.outOfRange, 11), (.unimplemented, 12), (.internal, 13),
                                             (.unavailable, 14), (.dataLoss, 15), (.unauthenticated, 16)]
        for (code, number) in codes {
            XCTAssertEqual(code.rawValue, number, "\(code)")
        }
    }
}
