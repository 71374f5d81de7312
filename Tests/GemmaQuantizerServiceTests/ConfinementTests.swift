import Foundation
import GemmaConvert
import GemmaQuant
@testable import GemmaQuantizerService
import GemmaWire
import XCTest

/// Confinement to the models directory on bytes and without races: combining marks after
/// "." and "/", NFC and NFD names, hard links, a folder swapped for a symbolic link while
/// jobs write into it, and a degenerate input refused at submission.
final class ConfinementTests: XCTestCase {
    var directory: URL!
    var models: URL { directory.appendingPathComponent("models") }
    var outside: URL { directory.appendingPathComponent("outside") }
    var runner: QuantizerJobRunner!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("gemma-confinement-\(UUID().uuidString)")
        try QuantizerFixtures.copyModel(QuantizerFixtures.tinyModel, to: models.appendingPathComponent("tiny-mqa"))
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        runner = try QuantizerJobRunner(models: ModelsDirectory(path: models.path),
                                        configuration: .init(maxRunningJobs: 1, maxQueuedJobs: 64, threadsPerJob: 1),
                                        logger: QuantizerFixtures.logger("test.confinement"))
    }

    override func tearDownWithError() throws {
        runner.shutdown()
        try? FileManager.default.removeItem(at: directory)
    }

    func request(_ id: String, _ input: String, _ output: String, overwrite: Bool = false) -> JobRequest {
        JobRequest(jobID: id, inputPath: input, outputPath: output, target: .q8_0, overwrite: overwrite)
    }

    /// Submits and waits until the job is final (at most 60 s).
    func run(_ request: JobRequest, line: UInt = #line) throws -> QuantizerJob {
        var job = try runner.submit(request)
        let deadline = Date().addingTimeInterval(60)
        while !job.state.isFinal && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.01)
            job = try runner.status(request.jobID)
        }
        XCTAssertTrue(job.state.isFinal, "job \(request.jobID) did not finish", line: line)
        return job
    }

    func assertRefused(_ request: JobRequest, _ code: RPCStatusCode = .invalidArgument, containing text: String, line: UInt = #line) {
        XCTAssertThrowsError(try runner.submit(request), line: line) { error in
            guard let error = error as? RPCError else { return XCTFail("\(error)", line: line) }
            XCTAssertEqual(error.code, code, error.message, line: line)
            XCTAssertTrue(error.message.contains(text), "'\(error.message)' does not contain '\(text)'", line: line)
        }
    }

    /// Entry names of `url` as bytes (Swift `String` equality would merge NFC and NFD).
    func names(_ url: URL) -> [[UInt8]] {
        guard let stream = opendir(url.path) else { return [] }
        defer { closedir(stream) }
        var result: [[UInt8]] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [0x2E] && name != [0x2E, 0x2E] { result.append(name) }
        }
        return result.sorted { $0.lexicographicallyPrecedes($1) }
    }

    func assertNothingOutside(line: UInt = #line) {
        XCTAssertEqual(names(outside), [], "something was written outside the models directory", line: line)
        XCTAssertEqual(names(directory), [Array("models".utf8), Array("outside".utf8)], line: line)
    }

    func testCombiningMarksAfterDotsAndSlashes() throws {
        // ".." then a combining mark: "/" + U+0301 is one Character, but the bytes split at "/" give "..".
        assertRefused(request("a", "tiny-mqa", "../\u{301}fuzz.gguf"), containing: "'..' is refused")
        assertRefused(request("b", "tiny-mqa/../\u{301}", "x.gguf"), containing: "'..' is refused")
        assertRefused(request("c", "tiny-mqa", "./x.gguf"), containing: "'.' components")
        assertRefused(request("d", "tiny-mqa", "a//x.gguf"), containing: "empty component")
        assertRefused(request("e", "tiny-mqa", "x.gguf/"), containing: "empty component")
        assertRefused(request("f", "tiny-mqa", "\u{301}/../x.gguf"), containing: "'..' is refused")
        // ".\u{301}" and "..\u{301}" are ordinary names: legal, and only ever inside.
        XCTAssertEqual(mkdir(models.path + "/.\u{301}", 0o755), 0)
        XCTAssertEqual(mkdir(models.path + "/a", 0o755), 0)
        XCTAssertEqual(mkdir(models.path + "/a/..\u{301}", 0o755), 0)
        assertRefused(request("g", "tiny-mqa", "..\u{301}/x.gguf"), containing: "does not exist")
        for (id, output) in [("h", ".\u{301}/x.gguf"), ("i", "a/..\u{301}/x.gguf"), ("j", "\u{301}x.gguf")] {
            let job = try run(request(id, "tiny-mqa", output))
            XCTAssertEqual(job.state, .succeeded, job.error)
            XCTAssertNotNil(try GGUFFile(path: models.path + "/" + output), output)
        }
        XCTAssertEqual(names(models.appendingPathComponent(".\u{301}")), [Array("x.gguf".utf8)])
        assertNothingOutside()
    }

    func testNFCAndNFDSpellingsAreDifferentNamesBothInside() throws {
        let nfc = "caf\u{E9}.gguf", nfd = "cafe\u{301}.gguf"
        XCTAssertEqual(try run(request("nfc", "tiny-mqa", nfc)).state, .succeeded)
        // Not "already exists": another name.
        XCTAssertEqual(try run(request("nfd", "tiny-mqa", nfd)).state, .succeeded)
        let gguf = names(models).filter { $0.starts(with: Array("caf".utf8)) }
        XCTAssertEqual(gguf, [Array(nfc.utf8), Array(nfd.utf8)].sorted { $0.lexicographicallyPrecedes($1) })
        // An input folder spelled NFD is not found under its NFC spelling.
        XCTAssertEqual(rename(models.path + "/tiny-mqa", models.path + "/mode\u{300}le"), 0)
        assertRefused(request("nfc-input", "mod\u{E8}le", "m.gguf"), containing: "no such file")
        XCTAssertEqual(try run(request("nfd-input", "mode\u{300}le", "m.gguf")).state, .succeeded)
        assertNothingOutside()
    }

    func testHardLinksAreRefusedAsInputsAndAsOutputsToOverwrite() throws {
        let secret = outside.appendingPathComponent("secret.gguf")
        try Data("secret".utf8).write(to: secret)
        XCTAssertEqual(link(secret.path, models.path + "/linked.gguf"), 0)
        assertRefused(request("overwrite", "tiny-mqa", "linked.gguf", overwrite: true), containing: "2 hard links")
        assertRefused(request("keep", "tiny-mqa", "linked.gguf"), .alreadyExists, containing: "linked.gguf")
        assertRefused(request("input", "linked.gguf", "x.gguf"), containing: "2 hard links")
        // A checkpoint folder one of whose files is a hard link.
        try QuantizerFixtures.copyModel(QuantizerFixtures.tinyModel, to: models.appendingPathComponent("shared"))
        let config = models.appendingPathComponent("shared/config.json")
        try FileManager.default.moveItem(at: config, to: outside.appendingPathComponent("config.json"))
        XCTAssertEqual(link(outside.appendingPathComponent("config.json").path, config.path), 0)
        assertRefused(request("folder", "shared", "y.gguf"), containing: "'config.json' has 2 hard links")
        XCTAssertEqual(try String(contentsOf: secret, encoding: .utf8), "secret")
        XCTAssertEqual(names(outside), [Array("config.json".utf8), Array("secret.gguf".utf8)])
    }

    func testAFolderSwappedForALinkWhileJobsRunCannotLeadOutside() throws {
        let work = models.path + "/work", aside = models.path + "/work-aside"
        XCTAssertEqual(mkdir(work, 0o755), 0)
        let stop = ManagedAtomicFlag()
        let swapper = Thread {
            // The real folder and the link each stand for a moment, so that submits see both.
            while !stop.isSet {
                usleep(300)
                rename(work, aside)
                symlink(self.outside.path, work)
                usleep(300)
                unlink(work)
                rename(aside, work)
            }
            stop.finished()
        }
        swapper.start()
        var accepted: [String] = []
        let deadline = Date().addingTimeInterval(3)
        var index = 0
        while Date() < deadline && index < 40 {
            let id = "race-\(index)"
            if (try? runner.submit(request(id, "tiny-mqa", "work/out-\(index).gguf"))) != nil { accepted.append(id) }
            index += 1
            Thread.sleep(forTimeInterval: 0.02)
        }
        // Keep swapping while the accepted jobs write.
        var jobs: [QuantizerJob] = []
        for id in accepted {
            var job = try runner.status(id)
            while !job.state.isFinal {
                Thread.sleep(forTimeInterval: 0.01)
                job = try runner.status(id)
            }
            jobs.append(job)
        }
        stop.set()
        stop.waitUntilFinished()
        XCTAssertEqual(names(outside), [], "a job wrote outside the models directory")
        XCTAssertFalse(accepted.isEmpty, "no job was accepted while the folder was swapped: the race was not exercised")
        XCTAssertLessThan(accepted.count, index, "every submit was accepted: the swap was never seen")
        for job in jobs where job.state == .succeeded {
            XCTAssertTrue(FileManager.default.fileExists(atPath: models.path + "/" + job.request.outputPath), job.request.outputPath)
        }
        XCTAssertEqual(names(outside), [])
    }

    func testADegenerateInputIsInvalidArgumentAtSubmitNamingTheField() throws {
        var metadata: GGUFMetadata = [
            "general.architecture": .string("gemma"), "gemma.embedding_length": .uint32(8),
            "gemma.attention.head_count": .uint32(0), "gemma.feed_forward_length": .uint32(16),
            "gemma.block_count": .uint32(1), "gemma.context_length": .uint32(64),
            "gemma.attention.layer_norm_rms_epsilon": .float32(1e-6),
        ]
        func write(_ name: String) throws {
            let writer = try GGUFWriter(path: models.path + "/" + name, metadata: metadata,
                                        tensors: [GGUFTensorDeclaration(name: "token_embd.weight", dimensions: [8, 4], type: .f32)])
            try writer.writeTensor("token_embd.weight", values: [Float](repeating: 0, count: 32))
            try writer.finish()
        }
        try write("zero-heads.gguf")
        assertRefused(request("zero", "zero-heads.gguf", "z.gguf"), containing: "gemma.attention.head_count")
        metadata["gemma.attention.head_count"] = .uint32(2)
        metadata["gemma.attention.key_length"] = .uint64(1 << 40)
        try write("huge-head.gguf")
        assertRefused(request("huge", "huge-head.gguf", "h.gguf"), containing: "gemma.attention.key_length")
        XCTAssertEqual(runner.list().count, 0)
    }
}

/// A flag one thread sets and another polls, and a signal that the poller has finished.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let condition = NSCondition()
    private var flag = false
    private var done = false

    var isSet: Bool { condition.withLock { flag } }
    func set() { condition.withLock { flag = true } }
    func finished() { condition.withLock { done = true; condition.broadcast() } }
    func waitUntilFinished() {
        condition.lock()
        while !done { condition.wait() }
        condition.unlock()
    }
}
