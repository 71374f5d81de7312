import Foundation
@testable import GemmaRouter
import Hummingbird
import HummingbirdTesting
import XCTest

/// Hostile HTTP against the router on a real TCP port (its own `application`, with the
/// in-process tokenizer and shard services behind it): parameters at the limits of every
/// number type and of the wrong JSON type, deep nesting, invalid UTF-8, huge strings and
/// arrays, truncated and randomly mutated bodies, every route and wrong methods, garbage at the
/// HTTP level, and slow, half-sent requests. Every answer must be well-formed HTTP with a status
/// under 500 (503 allowed: the pipeline may be unavailable) and OpenAI error JSON for errors;
/// after each batch the router still answers a well-formed completion with the same text.
///
/// Seeded and bounded: the seed is in every failure message; `mutationCount` sets the size.
final class HTTPFuzzTests: RouterTestCase {
    static let seed: UInt64 = 0x6A6D_6D61_5345_4544
    static let mutationCount = 2000
    static let wellFormed = FuzzCases.body([("prompt", #""Once""#), ("max_tokens", "6"), ("temperature", "0"), ("ignore_eos", "true")])

    func testHostileParameterValues() async throws {
        try await fuzz([("parameters", FuzzCases.parameters())])
    }

    func testHostileBodiesAndMutations() async throws {
        var random = FuzzRandom(seed: Self.seed)
        let bodies = FuzzCases.bodies(&random)
        try await fuzz([("bodies", bodies), ("mutations", FuzzCases.mutations(count: Self.mutationCount, &random))])
    }

    func testRoutesMethodsAndHTTPGarbage() async throws {
        try await fuzz([("routes", FuzzCases.routes()), ("HTTP garbage", FuzzCases.httpGarbage())])
    }

    /// Half-sent requests that stall or hang up, a stalled head, and a 40 MB Content-Length:
    /// the router answers others meanwhile, closes the stalled ones at the idle timeout, and
    /// refuses the large one (413) from its head alone.
    func testSlowHalfSentAndOversizedRequests() async throws {
        let router = try makeRouter(idleTimeoutSeconds: 2)
        try await router.application(host: "127.0.0.1", port: 0).test(.live) { client in
            let port = try XCTUnwrap(client.port)
            let expected = try await self.completionText(port)
            let problems = try await onThread { () -> [String] in
                let http = FuzzHTTP(port: port, timeoutSeconds: 30)
                var problems: [String] = []
                let body = Array(Self.wellFormed.utf8)
                let head = Array("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8)
                // Hang up after half the body, after the head, in the head.
                for cut in [head.count + body.count / 2, head.count, head.count / 2, 1] {
                    for _ in 0..<5 {
                        let fd = try http.connect()
                        http.write(fd, Array((head + body)[..<cut]))
                        close(fd)
                    }
                }
                // Stall: half a body, and half a head.
                let stalled = try [head.count + body.count / 2, head.count / 2].map { cut -> Int32 in
                    let fd = try http.connect()
                    http.write(fd, Array((head + body)[..<cut]))
                    return fd
                }
                // Meanwhile, others are served.
                let reply = try http.send("POST", "/v1/completions", body: body)
                if reply.status != 200 { problems.append("a request beside stalled ones got \(reply.status): \(reply.text.prefix(300))") }
                for fd in stalled {
                    if !http.closedByServer(fd, within: 10) { problems.append("a stalled connection was not closed at the idle timeout") }
                    close(fd)
                }
                // 40 MB announced: 413 from the head alone.
                let fd = try http.connect()
                defer { close(fd) }
                http.write(fd, Array("POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: \(40 << 20)\r\n\r\n".utf8))
                let large = try FuzzHTTP.parse(http.readAll(fd))
                if let problem = Self.problem(with: large, httpGarbage: false) { problems.append("40 MB: \(problem)") }
                if large.status != 413 { problems.append("40 MB: status \(large.status), not 413") }
                return problems
            }
            XCTAssertEqual(problems, [], "seed \(Self.seed)")
            let after = try await self.completionText(port)
            XCTAssertEqual(after, expected, "the router answers differently after slow clients")
        }
    }

    // MARK: Running cases

    /// Starts the router's own application on a free port, then sends each batch, checking
    /// every answer and, after each batch, a well-formed completion.
    func fuzz(_ batches: [(String, [FuzzCase])]) async throws {
        let router = try makeRouter()
        try await router.application(host: "127.0.0.1", port: 0).test(.live) { client in
            let port = try XCTUnwrap(client.port)
            let expected = try await self.completionText(port)
            for (name, cases) in batches {
                let started = ContinuousClock.now
                let failures = try await onThread { Self.run(cases, port: port) }
                XCTAssertTrue(failures.isEmpty, "seed \(Self.seed), batch \(name): \(failures.count) of \(cases.count) cases failed:\n"
                              + failures.joined(separator: "\n"))
                let text = try await self.completionText(port)
                XCTAssertEqual(text, expected, "seed \(Self.seed): after batch \(name) the router answers differently")
                print("HTTPFuzzTests: batch \(name): \(cases.count) cases in \(ContinuousClock.now - started), seed \(Self.seed)")
            }
        }
    }

    /// The failures among `cases` (stops after 20).
    static func run(_ cases: [FuzzCase], port: Int) -> [String] {
        let http = FuzzHTTP(port: port, timeoutSeconds: 30)
        var failures: [String] = []
        for c in cases where failures.count < 20 {
            do {
                let reply = try http.exchange(c.bytes, thenHalfClose: c.httpGarbage)
                if let problem = problem(with: reply, httpGarbage: c.httpGarbage) {
                    failures.append("\(c.name.boundedForLog(120)): \(problem)")
                }
            } catch let error as FuzzHTTP.Failure where c.httpGarbage && error.description.hasPrefix("no HTTP head in 0 bytes") {
                continue   // the parser gave up on the connection without an answer
            } catch {
                failures.append("\(c.name.boundedForLog(120)): \(error)")
                if error is FuzzHTTP.Failure, "\(error)".contains("the server is gone") { break }
            }
        }
        return failures
    }

    /// What is wrong with an answer, or nil.
    static func problem(with reply: FuzzHTTP.Reply, httpGarbage: Bool) -> String? {
        let text = reply.text.boundedForLog(300)
        guard reply.status >= 200, reply.status < 500 || reply.status == 503 else { return "status \(reply.status): \(text)" }
        guard reply.status >= 400 else { return nil }
        if httpGarbage, reply.body.isEmpty { return nil }
        guard let json = try? JSONSerialization.jsonObject(with: reply.body) as? [String: Any],
              let error = json["error"] as? [String: Any], Set(error.keys) == ["message", "type", "param", "code"],
              let message = error["message"] as? String, !message.isEmpty, error["type"] is String else {
            return "status \(reply.status) without OpenAI error JSON: \(text)"
        }
        if message.utf8.count > RequestLimits.maxErrorMessageBytes + 3 { return "a message of \(message.utf8.count) bytes" }
        return nil
    }

    /// The text of the well-formed greedy completion (its answer must be a 200).
    func completionText(_ port: Int) async throws -> String {
        let reply = try await onThread { try FuzzHTTP(port: port).send("POST", "/v1/completions", body: Array(Self.wellFormed.utf8)) }
        XCTAssertEqual(reply.status, 200, reply.text)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: reply.body) as? [String: Any], reply.text)
        let text = try XCTUnwrap((json["choices"] as? [[String: Any]])?.first?["text"] as? String, reply.text)
        XCTAssertFalse(text.isEmpty)
        return text
    }
}
