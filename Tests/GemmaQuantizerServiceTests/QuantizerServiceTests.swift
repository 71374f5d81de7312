import Foundation
import GemmaConvert
import GemmaQuant
@testable import GemmaQuantizerService
@testable import GemmaWire
import GemmaTestSupport
import XCTest

/// The quantizer service over real nng sockets and real files: the converter's bytes, job ids
/// that make retries safe, cancellation, confinement to the models directory, the queue bound,
/// and restarts.
final class QuantizerServiceTests: XCTestCase {
    private func harness(gate: ChunkGate? = nil, maxRunningJobs: Int = 1, maxQueuedJobs: Int = 8,
                         directory: URL? = nil) throws -> QuantizerHarness {
        let harness = try QuantizerHarness(
            directory: directory,
            configuration: .init(maxRunningJobs: maxRunningJobs, maxQueuedJobs: maxQueuedJobs, threadsPerJob: 2,
                                 afterEachChunk: gate?.hook))
        addTeardownBlock {
            gate?.open()
            await harness.stop()
            try? FileManager.default.removeItem(at: harness.directory)
        }
        return harness
    }

    func testConversionThroughTheServiceIsByteIdenticalToTheLocalConverter() async throws {
        let service = try harness()
        let follower = RemoteConversion(client: service.client, pollInterval: .milliseconds(20))
        for type in [Gemma_V1_QuantType.q80, .q40, .bf16] {
            let target = try XCTUnwrap(QuantizationTarget(type))
            var updates: [Gemma_V1_Job] = []
            let job = try await follower.run(QuantizerFixtures.request("job-\(target)", "tiny-mqa", "tiny-\(target).gguf", type)) {
                updates.append($0)
            }
            XCTAssertEqual(job.state, .succeeded, job.error)
            XCTAssertEqual(job.error, "")
            XCTAssertGreaterThan(job.tensorCount, 0)
            XCTAssertEqual(job.tensorIndex, job.tensorCount)
            XCTAssertEqual(job.type, type)
            XCTAssertEqual(updates.first?.jobID, "job-\(target)")

            let local = service.directory.appendingPathComponent("local-\(target).gguf")
            try GGUFConverter(input: QuantizerFixtures.tinyModel.path).convert(to: local.path, target: target)
            let remote = try Data(contentsOf: service.models.appendingPathComponent("tiny-\(target).gguf"))
            XCTAssertEqual(remote, try Data(contentsOf: local), "\(target): the service's file differs from the local converter's")
            XCTAssertEqual(job.bytesWritten, UInt64(try GGUFFile(path: local.path).tensors.reduce(0) { $0 + $1.byteCount }))
        }
        let jobs = try await service.list()
        XCTAssertEqual(jobs.map(\.jobID), ["job-q8_0", "job-q4_0", "job-bf16"], "oldest first")
        XCTAssertEqual(try service.files(), [QuantizerJobRunnerJournal.name, "tiny-bf16.gguf", "tiny-mqa", "tiny-q4_0.gguf", "tiny-q8_0.gguf"],
                       "only the outputs and the journal")
    }

    func testRetriedSubmitWithTheSameJobIDRunsOnce() async throws {
        let gate = ChunkGate(open: false)
        let service = try harness(gate: gate)
        let request = QuantizerFixtures.request("retry-me", "tiny-mqa", "once.gguf")
        let first = try await service.submit(request)
        XCTAssertEqual(first.jobID, "retry-me")
        try await service.waitFor("retry-me", "to run") { $0.state == .running && $0.tensorIndex >= 1 }

        // The same submit again, while it runs: the same job, not a second one.
        let again = try await service.submit(request)
        XCTAssertEqual(again.state, .running)
        XCTAssertEqual(again.jobID, "retry-me")
        // The same id with other parameters is refused.
        var other = request
        other.outputPath = "twice.gguf"
        await assertRPCError(.alreadyExists, containing: "retry-me") { try await service.submit(other) }

        gate.open()
        let done = try await service.waitUntilFinal("retry-me")
        XCTAssertEqual(done.state, .succeeded, done.error)
        // A retry after it finished (its output exists now) returns the finished job.
        let late = try await service.submit(request)
        XCTAssertEqual(late.state, .succeeded)
        XCTAssertEqual(gate.runs("retry-me"), 1, "the conversion ran more than once")
        let jobs = try await service.list()
        XCTAssertEqual(jobs.map(\.jobID), ["retry-me"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: service.models.appendingPathComponent("twice.gguf").path))
    }

    func testCancelStopsARunningJobAndLeavesNoOutput() async throws {
        let gate = ChunkGate(open: false)
        let service = try harness(gate: gate)
        _ = try await service.submit(QuantizerFixtures.request("long", "tiny-mqa", "long.gguf"))
        _ = try await service.submit(QuantizerFixtures.request("waiting", "tiny-mqa", "waiting.gguf"))
        let running = try await service.waitFor("long", "to run") { $0.state == .running && $0.tensorIndex >= 1 }
        XCTAssertGreaterThan(running.bytesWritten, 0)
        let whileRunning = try service.files()
        XCTAssertTrue(whileRunning.contains { $0.hasPrefix(".long.gguf.") && $0.hasSuffix(".tmp") },
                      "the running job writes a temporary file: \(whileRunning)")

        // A queued job is cancelled at once and never runs.
        let waiting = try await service.cancel("waiting")
        XCTAssertEqual(waiting.state, .cancelled)

        // The running job: the cancellation is asked for while it is held after a chunk, then
        // the job goes on to its next chunk, sees it and stops; CancelJob answers once it has.
        XCTAssertEqual(try service.runner.cancel("long").state, .running)
        gate.open()
        let cancelled = try await service.cancel("long")
        XCTAssertEqual(cancelled.state, .cancelled)
        XCTAssertEqual(cancelled.error, "")
        XCTAssertEqual(try service.files(), [QuantizerJobRunnerJournal.name, "tiny-mqa"], "a partial output or temporary file was left")

        let status = try await service.status("long")
        XCTAssertEqual(status.state, .cancelled)
        let again = try await service.cancel("long")
        XCTAssertEqual(again.state, .cancelled, "cancelling a finished job leaves it as it is")
        XCTAssertEqual(gate.runs("waiting"), 0)
        await assertRPCError(.notFound, containing: "nobody") { try await service.cancel("nobody") }
        await assertRPCError(.notFound, containing: "nobody") { try await service.status("nobody") }

        // The service goes on working.
        let next = try await RemoteConversion(client: service.client, pollInterval: .milliseconds(20))
            .run(QuantizerFixtures.request("after", "tiny-mqa", "long.gguf"))
        XCTAssertEqual(next.state, .succeeded, next.error)
    }

    func testPathsOutsideTheModelsDirectoryAreRefusedNamingThePath() async throws {
        let service = try harness()
        let fm = FileManager.default
        let outside = service.directory.appendingPathComponent("outside")
        try QuantizerFixtures.copyModel(QuantizerFixtures.tinyModel, to: outside.appendingPathComponent("tiny-mqa"))
        let models = service.models
        try fm.createSymbolicLink(at: models.appendingPathComponent("escape"), withDestinationURL: outside.appendingPathComponent("tiny-mqa"))
        try fm.createSymbolicLink(at: models.appendingPathComponent("out"), withDestinationURL: outside)
        try fm.createSymbolicLink(at: models.appendingPathComponent("alias"), withDestinationURL: models.appendingPathComponent("tiny-mqa"))
        // A checkpoint folder inside whose tokenizer links outside.
        try QuantizerFixtures.copyModel(QuantizerFixtures.tinyModel, to: models.appendingPathComponent("sneaky"))
        try fm.removeItem(at: models.appendingPathComponent("sneaky/tokenizer.model"))
        try fm.createSymbolicLink(at: models.appendingPathComponent("sneaky/tokenizer.model"),
                                  withDestinationURL: outside.appendingPathComponent("tiny-mqa/tokenizer.model"))
        try Data("old".utf8).write(to: models.appendingPathComponent("existing.gguf"))
        let absolute = models.appendingPathComponent("tiny-mqa").path

        let refused: [(input: String, output: String, code: RPCStatusCode, named: String)] = [
            (absolute, "a.gguf", .invalidArgument, absolute),
            ("../outside/tiny-mqa", "a.gguf", .invalidArgument, "../outside/tiny-mqa"),
            ("tiny-mqa/../tiny-mqa", "a.gguf", .invalidArgument, "tiny-mqa/../tiny-mqa"),
            ("escape", "a.gguf", .invalidArgument, "escape"),
            ("sneaky", "a.gguf", .invalidArgument, "tokenizer.model"),
            ("no-such-model", "a.gguf", .invalidArgument, "no-such-model"),
            ("", "a.gguf", .invalidArgument, "input_path"),
            (String(repeating: "a/", count: 2500), "a.gguf", .invalidArgument, "5000 bytes"),
            ("tiny-mqa", outside.appendingPathComponent("a.gguf").path, .invalidArgument, outside.appendingPathComponent("a.gguf").path),
            ("tiny-mqa", "../a.gguf", .invalidArgument, "../a.gguf"),
            ("tiny-mqa", "out/a.gguf", .invalidArgument, "out/a.gguf"),
            ("tiny-mqa", "no-folder/a.gguf", .invalidArgument, "no-folder"),
            ("tiny-mqa", "tiny-mqa", .invalidArgument, "tiny-mqa"),
            ("tiny-mqa", QuantizerJobRunnerJournal.name, .invalidArgument, QuantizerJobRunnerJournal.name),
            ("tiny-mqa", "existing.gguf", .alreadyExists, "existing.gguf"),
        ]
        for (index, c) in refused.enumerated() {
            let error = await assertRPCError(c.code, containing: c.named) {
                try await service.submit(QuantizerFixtures.request("refused-\(index)", c.input, c.output))
            }
            if let error { XCTAssertTrue(error.message.contains(c.input.isEmpty ? "input_path" : "_path"), error.message) }
        }
        var noType = QuantizerFixtures.request("no-type", "tiny-mqa", "a.gguf")
        noType.type = .unspecified
        await assertRPCError(.invalidArgument, containing: "QUANT_TYPE_UNSPECIFIED") { try await service.submit(noType) }
        await assertRPCError(.invalidArgument, containing: "job_id") {
            try await service.submit(QuantizerFixtures.request("", "tiny-mqa", "a.gguf"))
        }
        let jobs = try await service.list()
        XCTAssertEqual(jobs.count, 0, "a refused submit made a job")

        // What is allowed: a link that stays inside, and replacing an output when asked.
        let follower = RemoteConversion(client: service.client, pollInterval: .milliseconds(20))
        let viaAlias = try await follower.run(QuantizerFixtures.request("alias", "alias", "alias.gguf"))
        XCTAssertEqual(viaAlias.state, .succeeded, viaAlias.error)
        let replaced = try await follower.run(QuantizerFixtures.request("replace", "tiny-mqa", "existing.gguf", overwrite: true))
        XCTAssertEqual(replaced.state, .succeeded, replaced.error)
        let local = service.directory.appendingPathComponent("local.gguf")
        try GGUFConverter(input: QuantizerFixtures.tinyModel.path).convert(to: local.path, target: .q8_0)
        XCTAssertEqual(try Data(contentsOf: models.appendingPathComponent("existing.gguf")), try Data(contentsOf: local))
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: outside.path), ["tiny-mqa"], "something was written outside")
    }

    func testSubmitsPastTheQueueAreResourceExhausted() async throws {
        let gate = ChunkGate(open: false)
        let service = try harness(gate: gate, maxRunningJobs: 1, maxQueuedJobs: 1)
        _ = try await service.submit(QuantizerFixtures.request("a", "tiny-mqa", "a.gguf"))
        _ = try await service.submit(QuantizerFixtures.request("b", "tiny-mqa", "b.gguf"))
        await assertRPCError(.resourceExhausted, containing: "1 running + 1 queued") {
            try await service.submit(QuantizerFixtures.request("c", "tiny-mqa", "c.gguf"))
        }
        // Two jobs may not write one output.
        _ = try await service.cancel("b")
        await assertRPCError(.alreadyExists, containing: "job 'a'") {
            try await service.submit(QuantizerFixtures.request("c", "tiny-mqa", "a.gguf"))
        }
        // A place freed takes the next job.
        _ = try await service.submit(QuantizerFixtures.request("c", "tiny-mqa", "c.gguf"))
        gate.open()
        for id in ["a", "c"] {
            let job = try await service.waitUntilFinal(id)
            XCTAssertEqual(job.state, .succeeded, job.error)
        }
        let jobs = try await service.list()
        XCTAssertEqual(jobs.map(\.jobID), ["a", "b", "c"])
        XCTAssertEqual(jobs.map(\.state), [.succeeded, .cancelled, .succeeded])
    }

    func testARestartReportsUnfinishedJobsAsFailed() async throws {
        let gate = ChunkGate(open: false)
        let first = try harness(gate: gate, maxQueuedJobs: 2)
        _ = try await first.submit(QuantizerFixtures.request("done", "tiny-mqa", "done.gguf"))
        gate.open()
        let done = try await first.waitUntilFinal("done")
        XCTAssertEqual(done.state, .succeeded, done.error)
        let held = ChunkGate(open: false)
        await first.stop()

        // A second service on the same folder, killed while one job runs and one waits: its
        // journal at that moment is kept, with the temporary file the killed job left.
        let second = try QuantizerHarness(directory: first.directory,
                                          configuration: .init(threadsPerJob: 2, afterEachChunk: held.hook))
        _ = try await second.submit(QuantizerFixtures.request("running", "tiny-mqa", "running.gguf", .q40))
        _ = try await second.submit(QuantizerFixtures.request("queued", "tiny-mqa", "queued.gguf"))
        try await second.waitFor("running", "to run") { $0.state == .running && $0.tensorIndex >= 1 }
        let journal = second.models.appendingPathComponent(QuantizerJobRunnerJournal.name)
        let atTheKill = try Data(contentsOf: journal)
        let files = try second.files()
        let leftovers = files.filter { $0.hasSuffix(".tmp") }
        XCTAssertEqual(leftovers.count, 1, "\(files)")
        let savedTemporary = try Data(contentsOf: second.models.appendingPathComponent(leftovers[0]))
        _ = try second.runner.cancel("running")
        held.open()
        await second.stop()
        try atTheKill.write(to: journal)
        try savedTemporary.write(to: second.models.appendingPathComponent(leftovers[0]))

        let third = try harness(directory: first.directory)
        let jobs = try await third.list()
        XCTAssertEqual(jobs.map(\.jobID), ["done", "running", "queued"])
        XCTAssertEqual(jobs.map(\.state), [.succeeded, .failed, .failed])
        XCTAssertTrue(jobs[1].error.contains("restarted") && jobs[1].error.contains("RUNNING"), jobs[1].error)
        XCTAssertTrue(jobs[2].error.contains("restarted") && jobs[2].error.contains("QUEUED"), jobs[2].error)
        XCTAssertEqual(try third.files(), [QuantizerJobRunnerJournal.name, "done.gguf", "tiny-mqa"],
                       "the killed job's temporary file is removed, and nothing else was written")
        // The journal on disk says so too, and a retried submit of a failed job does not rerun it.
        let saved = try JobJournal(path: journal.path).load()
        XCTAssertEqual(saved.map(\.state), [.succeeded, .failed, .failed])
        let retried = try await third.submit(QuantizerFixtures.request("running", "tiny-mqa", "running.gguf", .q40))
        XCTAssertEqual(retried.state, .failed)
        let fresh = try await RemoteConversion(client: third.client, pollInterval: .milliseconds(20))
            .run(QuantizerFixtures.request("running-again", "tiny-mqa", "running.gguf", .q40))
        XCTAssertEqual(fresh.state, .succeeded, fresh.error)
    }

    func testAJobKilledAfterItsOutputWasRenamedIsReportedSucceeded() async throws {
        let first = try harness()
        let follower = RemoteConversion(client: first.client, pollInterval: .milliseconds(20))
        for id in ["renamed", "torn"] {
            let job = try await follower.run(QuantizerFixtures.request(id, "tiny-mqa", "\(id).gguf"))
            XCTAssertEqual(job.state, .succeeded, job.error)
        }
        let expected = try await first.status("renamed")
        await first.stop()
        // The service was killed after both renames but before either end was saved; one output
        // was since damaged (not a whole GGUF file, so not this job's).
        let journal = first.models.appendingPathComponent(QuantizerJobRunnerJournal.name)
        var jobs = try JobJournal(path: journal.path).load()
        for i in jobs.indices { jobs[i].state = .running }
        try JobJournal(path: journal.path).save(jobs)
        let torn = first.models.appendingPathComponent("torn.gguf")
        try Data(try Data(contentsOf: torn).prefix(1000)).write(to: torn)

        let second = try harness(directory: first.directory)
        let renamed = try await second.status("renamed")
        XCTAssertEqual(renamed.state, .succeeded, renamed.error)
        XCTAssertEqual(renamed.tensorCount, expected.tensorCount)
        XCTAssertEqual(renamed.tensorIndex, expected.tensorCount)
        XCTAssertEqual(renamed.bytesWritten, expected.bytesWritten)
        let failed = try await second.status("torn")
        XCTAssertEqual(failed.state, .failed)
        XCTAssertTrue(failed.error.contains("restarted"), failed.error)
    }

    func testAnUnreadableJournalStopsTheStartNamingTheFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gemma-quantizer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try Data("{not json".utf8).write(to: directory.appendingPathComponent(QuantizerJobRunnerJournal.name))
        XCTAssertThrowsError(try QuantizerJobRunner(models: ModelsDirectory(path: directory.path))) { error in
            XCTAssertTrue("\(error)".contains(QuantizerJobRunnerJournal.name), "\(error)")
        }
        XCTAssertThrowsError(try ModelsDirectory(path: directory.appendingPathComponent("missing").path)) { error in
            XCTAssertTrue("\(error)".contains("missing"), "\(error)")
        }
    }
}

/// The journal's file name, as the tests expect it.
enum QuantizerJobRunnerJournal {
    static let name = ".gemma-quantize-jobs.json"
}
