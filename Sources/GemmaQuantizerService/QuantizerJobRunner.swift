import Foundation
import GemmaConvert
import GemmaQuant
import GemmaWire
import Logging

/// Runs conversion jobs in a models directory: at most `maxRunningJobs` at once, each on a
/// worker thread of its own, with a bounded queue behind them.
///
/// Jobs are named by their client-chosen id: submitting the same id with the same parameters
/// again returns the existing job. Every change of state is saved in the `JobJournal`; a
/// runner started on a journal with unfinished jobs (the previous service was killed) reports
/// them failed and removes their temporary files (a job killed after its output was renamed
/// into place, before the journal was saved, is reported succeeded). Outputs appear only when complete
/// (`GGUFConverter` writes a temporary file and renames it), so a cancelled, failed or
/// killed job leaves no partial output.
public final class QuantizerJobRunner: @unchecked Sendable {
    /// Limits of a runner.
    public struct Configuration: Sendable {
        /// Jobs converting at once (worker threads).
        public var maxRunningJobs: Int
        /// Jobs waiting behind the running ones; more are RESOURCE_EXHAUSTED.
        public var maxQueuedJobs: Int
        /// Threads each conversion encodes on.
        public var threadsPerJob: Int
        /// Finished jobs remembered (and kept in the journal); the oldest are forgotten first.
        public var maxFinishedJobs: Int
        /// For tests only: called on a job's thread after each chunk it writes, before the
        /// job checks whether it was cancelled. Blocking here holds the job where it is.
        public var afterEachChunk: (@Sendable (_ jobID: String, _ progress: ConversionProgress) -> Void)?

        /// Limits; by default one job at a time, 8 queued, all cores for the running jobs.
        public init(maxRunningJobs: Int = 1, maxQueuedJobs: Int = 8, threadsPerJob: Int? = nil,
                    maxFinishedJobs: Int = 1000,
                    afterEachChunk: (@Sendable (String, ConversionProgress) -> Void)? = nil) {
            self.maxRunningJobs = max(1, maxRunningJobs)
            self.maxQueuedJobs = max(0, maxQueuedJobs)
            self.threadsPerJob = max(1, threadsPerJob ?? ProcessInfo.processInfo.activeProcessorCount / max(1, maxRunningJobs))
            self.maxFinishedJobs = max(1, maxFinishedJobs)
            self.afterEachChunk = afterEachChunk
        }
    }

    /// A job and what only the runner needs of it.
    private final class Entry {
        var job: QuantizerJob
        /// The opened input, from submission until the job ends.
        var converter: GGUFConverter?
        /// The output's folder (open) and name, checked at submission; nil for a job loaded
        /// from the journal (it is finished).
        var output: OutputTarget?
        /// Identifies the output file: two unfinished jobs may not have the same.
        let outputKey: String
        var cancelRequested = false
        /// Recent (time, bytes written) points, for the recent rate.
        var samples: [(time: ContinuousClock.Instant, bytes: Int)] = []

        init(job: QuantizerJob, converter: GGUFConverter?, output: OutputTarget?, outputKey: String) {
            self.job = job
            self.converter = converter
            self.output = output
            self.outputKey = outputKey
        }
    }

    /// The folder jobs read and write in.
    public let models: ModelsDirectory
    /// Its limits.
    public let configuration: Configuration
    private let journal: JobJournal
    private let logger: Logger
    private let condition = NSCondition()
    private var entries: [String: Entry] = [:]
    /// Job ids, oldest first.
    private var order: [String] = []
    /// Ids of queued jobs, in the order they run.
    private var queue: [String] = []
    private var liveWorkers = 0
    private var stopping = false

    /// A runner on `models`: loads the journal (unfinished jobs become failed), saves it, and
    /// starts the worker threads. Stop it with `shutdown()`.
    ///
    /// - Throws: `JobJournalError` when the journal cannot be read or written.
    public init(models: ModelsDirectory, configuration: Configuration = Configuration(),
                logger: Logger = Logger(label: "gemma.quantizer")) throws {
        self.models = models
        self.configuration = configuration
        self.logger = logger
        journal = JobJournal(path: models.journalPath)
        for var job in try journal.load() {
            if !job.state.isFinal {
                Self.settleAfterRestart(&job, models: models, logger: logger)
            }
            entries[job.id] = Entry(job: job, converter: nil, output: nil, outputKey: models.absolute(job.request.outputPath))
            order.append(job.id)
        }
        try journal.save(order.map { entries[$0]!.job })
        liveWorkers = configuration.maxRunningJobs
        for index in 0 ..< configuration.maxRunningJobs {
            let thread = Thread { self.work() }
            thread.name = "quantize-\(index)"
            thread.stackSize = 16 << 20
            thread.start()
        }
    }

    // MARK: - Calls

    /// Queues a job, or returns the existing job with this id when the parameters are the same.
    ///
    /// Opens the input at once, so a path outside the models directory or an input that is
    /// not a checkpoint is refused here rather than failing later.
    ///
    /// - Throws: `RPCError`: INVALID_ARGUMENT naming the bad id or path, ALREADY_EXISTS for an
    ///   id used with other parameters, an existing output without `overwrite`, or an output
    ///   another job is writing; RESOURCE_EXHAUSTED when the queue is full; UNAVAILABLE after
    ///   `shutdown()`; INTERNAL when the journal cannot be written.
    public func submit(_ request: JobRequest) throws(RPCError) -> QuantizerJob {
        try Self.checkJobID(request.jobID)
        if let existing = try sameJob(as: request) { return existing }
        let input = try models.input(request.inputPath)
        defer { input.release() }
        let output = try models.output(request.outputPath, overwrite: request.overwrite)
        let converter: GGUFConverter
        do {
            converter = try GGUFConverter(input: input.path)
        } catch {
            let message = input.describe("\(error)", as: models.absolute(request.inputPath))
            throw .invalidArgument("input_path '\(request.inputPath)': \(message)")
        }

        condition.lock()
        defer { condition.unlock() }
        if let existing = try sameJobLocked(as: request) { return existing }
        guard !stopping else { throw .unavailable("the quantizer service is shutting down; submit again later") }
        if let other = entries.values.first(where: { !$0.job.state.isFinal && $0.outputKey == output.key }) {
            throw RPCError(.alreadyExists, "output_path '\(request.outputPath)': job '\(other.job.id)' is writing it")
        }
        let active = entries.values.filter { !$0.job.state.isFinal }.count
        let limit = configuration.maxRunningJobs + configuration.maxQueuedJobs
        guard active < limit else {
            throw RPCError(.resourceExhausted, "the quantizer is full: \(active) jobs running or queued, the limit is \(configuration.maxRunningJobs) running + \(configuration.maxQueuedJobs) queued; submit again later")
        }
        let entry = Entry(job: QuantizerJob(request: request), converter: converter, output: output, outputKey: output.key)
        entries[request.jobID] = entry
        order.append(request.jobID)
        queue.append(request.jobID)
        do {
            try saveLocked()
        } catch {
            entries[request.jobID] = nil
            order.removeLast()
            queue.removeLast()
            throw .internal("\(error)")
        }
        condition.broadcast()
        logger.info("job queued", metadata: ["job_id": "\(request.jobID)", "input": "\(request.inputPath)",
                                              "output": "\(request.outputPath)", "type": "\(request.target.rawValue)"])
        return entry.job
    }

    /// The job called `id`.
    ///
    /// - Throws: `RPCError` NOT_FOUND for an unknown id.
    public func status(_ id: String) throws(RPCError) -> QuantizerJob {
        condition.lock()
        defer { condition.unlock() }
        return try entryLocked(id).job
    }

    /// Every job known, oldest first.
    public func list() -> [QuantizerJob] {
        condition.lock()
        defer { condition.unlock() }
        return order.map { entries[$0]!.job }
    }

    /// Cancels a queued job at once, or asks a running one to stop at its next chunk (it is
    /// still RUNNING in the result); a finished job is left as it is.
    ///
    /// - Throws: `RPCError` NOT_FOUND for an unknown id.
    public func cancel(_ id: String) throws(RPCError) -> QuantizerJob {
        condition.lock()
        defer { condition.unlock() }
        let entry = try entryLocked(id)
        switch entry.job.state {
        case .queued:
            queue.removeAll { $0 == id }
            end(entry, state: .cancelled)
        case .running:
            entry.cancelRequested = true
        default:
            break
        }
        return entry.job
    }

    /// Cancels the job and waits until it has stopped (its temporary file removed).
    ///
    /// - Throws: `RPCError` NOT_FOUND for an unknown id; DEADLINE_EXCEEDED when the task is
    ///   cancelled before the job stopped (it still stops).
    public func cancelAndWait(_ id: String) async throws(RPCError) -> QuantizerJob {
        var job = try cancel(id)
        while job.state == .running {
            do {
                try await Task.sleep(for: .milliseconds(10))
            } catch {
                throw RPCError(.deadlineExceeded, "job '\(id)' is stopping but had not stopped yet; JobStatus tells when it has")
            }
            job = try status(id)
        }
        return job
    }

    /// Stops the runner: queued jobs fail, running ones stop at their next chunk and fail
    /// (leaving no output), the journal is saved, and the worker threads end. Later
    /// submissions are UNAVAILABLE.
    public func shutdown() {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else { return }
        stopping = true
        for id in queue {
            end(entries[id]!, state: .failed, error: "the service stopped before the job started")
        }
        queue = []
        condition.broadcast()
        while liveWorkers > 0 { condition.wait() }
    }

    // MARK: - Workers

    private enum Outcome {
        case succeeded, failed(String), cancelled
    }

    /// A worker thread: takes queued jobs one at a time until `shutdown()`.
    private func work() {
        condition.lock()
        while true {
            while queue.isEmpty && !stopping { condition.wait() }
            if stopping { break }
            let entry = entries[queue.removeFirst()]!
            entry.job.state = .running
            saveOrLogLocked()
            logger.info("job started", metadata: ["job_id": "\(entry.job.id)"])
            let request = entry.job.request
            let converter = entry.converter!
            condition.unlock()
            let outcome = run(request, converter: converter, entry: entry)
            condition.lock()
            switch outcome {
            case .succeeded:
                entry.job.tensorIndex = entry.job.tensorCount
                entry.job.bytesWritten = entry.job.totalBytes
                end(entry, state: .succeeded)
            case .failed(let message):
                end(entry, state: .failed, error: message)
            case .cancelled:
                if entry.cancelRequested {
                    end(entry, state: .cancelled)
                } else {
                    end(entry, state: .failed, error: "the service stopped before the job finished")
                }
            }
        }
        liveWorkers -= 1
        condition.broadcast()
        condition.unlock()
    }

    /// Converts, off the lock.
    private func run(_ request: JobRequest, converter: GGUFConverter, entry: Entry) -> Outcome {
        guard let output = entry.output else { return .failed("the job has no output") }
        if !request.overwrite && output.exists {
            return .failed("output_path '\(request.outputPath)': the file appeared after the job was submitted; submit with overwrite to replace it")
        }
        let hook = configuration.afterEachChunk
        do {
            try converter.convert(directory: output.folder, name: output.name, displayPath: output.displayPath,
                                  target: request.target, threads: configuration.threadsPerJob,
                                  progress: { progress in
                                      self.record(progress, of: entry)
                                      hook?(request.jobID, progress)
                                  },
                                  isCancelled: { self.shouldStop(entry) })
            return .succeeded
        } catch ConversionError.cancelled {
            return .cancelled
        } catch {
            return .failed("\(error)")
        }
    }

    private func shouldStop(_ entry: Entry) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return entry.cancelRequested || stopping
    }

    /// Window of the recent write rate.
    private static let rateWindow = Duration.seconds(5)

    /// Takes a progress report into the job: position, bytes, recent rate, time left.
    private func record(_ progress: ConversionProgress, of entry: Entry) {
        condition.lock()
        defer { condition.unlock() }
        let now = ContinuousClock.now
        entry.samples.append((now, progress.bytesWritten))
        while entry.samples.count > 2 && now - entry.samples[1].time >= Self.rateWindow {
            entry.samples.removeFirst()
        }
        let base = entry.samples[0]
        let span = now - base.time
        let seconds = Double(span.components.seconds) + Double(span.components.attoseconds) * 1e-18
        let rate = seconds >= 0.25 ? Double(progress.bytesWritten - base.bytes) / seconds : progress.rate
        entry.job.tensorIndex = progress.tensorIndex
        entry.job.tensorCount = progress.tensorCount
        entry.job.bytesWritten = progress.bytesWritten
        entry.job.totalBytes = progress.totalBytes
        entry.job.bytesPerSecond = rate
        entry.job.secondsLeft = rate > 0 ? Double(progress.totalBytes - progress.bytesWritten) / rate : 0
    }

    // MARK: - Under the lock

    /// The existing job with `request`'s id: itself when the parameters are the same,
    /// ALREADY_EXISTS when not, nil when the id is new.
    private func sameJob(as request: JobRequest) throws(RPCError) -> QuantizerJob? {
        condition.lock()
        defer { condition.unlock() }
        return try sameJobLocked(as: request)
    }

    private func sameJobLocked(as request: JobRequest) throws(RPCError) -> QuantizerJob? {
        guard let existing = entries[request.jobID]?.job else { return nil }
        guard existing.request == request else {
            let old = existing.request
            throw RPCError(.alreadyExists, "job_id '\(request.jobID)' is already a job with other parameters (\(old.inputPath) -> \(old.outputPath), \(old.target.rawValue), overwrite \(old.overwrite)); choose a new job_id")
        }
        return existing
    }

    private func entryLocked(_ id: String) throws(RPCError) -> Entry {
        guard let entry = entries[id] else {
            throw .notFound("no job '\(id)' (ListJobs shows the jobs this service knows)")
        }
        return entry
    }

    /// Puts the job in a final state, forgets the oldest finished jobs past the limit, saves.
    private func end(_ entry: Entry, state: QuantizerJob.State, error: String = "") {
        entry.job.state = state
        entry.job.error = error
        entry.job.secondsLeft = 0
        if state != .succeeded { entry.job.bytesPerSecond = 0 }
        entry.converter = nil
        entry.output = nil
        entry.samples = []
        var finished = order.filter { entries[$0]!.job.state.isFinal }
        while finished.count > configuration.maxFinishedJobs {
            let oldest = finished.removeFirst()
            entries[oldest] = nil
            order.removeAll { $0 == oldest }
        }
        saveOrLogLocked()
        logger.info("job ended", metadata: ["job_id": "\(entry.job.id)", "state": "\(state.rawValue)",
                                             "error": "\(error)"])
    }

    private func saveLocked() throws {
        try journal.save(order.map { entries[$0]!.job })
    }

    private func saveOrLogLocked() {
        do {
            try saveLocked()
        } catch {
            logger.error("cannot save the job journal", metadata: ["error": "\(error)"])
        }
    }

    /// The end of a job that a killed service left queued or running: failed, unless it was
    /// killed between renaming its output into place and saving the journal (a running job
    /// without overwrite whose output is now a whole GGUF file: nothing else writes there).
    /// Its temporary files are removed. The output's folder is reached the way a job reaches
    /// it (`ModelsDirectory.outputFolder`), never by a path that a link could redirect.
    private static func settleAfterRestart(_ job: inout QuantizerJob, models: ModelsDirectory, logger: Logger) {
        job.bytesPerSecond = 0
        job.secondsLeft = 0
        if let target = models.outputFolder(job.request.outputPath) {
            let (folder, name) = target
            defer { close(folder) }
            removeTemporaryFiles(in: folder, of: name, logger: logger)
            let file = withCName(name) { openat(folder, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
            if file >= 0 {
                defer { close(file) }
                if job.state == .running, !job.request.overwrite, let gguf = try? GGUFFile(path: "/proc/self/fd/\(file)") {
                    logger.notice("job finished before the restart; its journal entry had not been saved",
                                  metadata: ["job_id": "\(job.id)", "output": "\(job.request.outputPath)"])
                    job.state = .succeeded
                    job.tensorCount = gguf.tensors.count
                    job.tensorIndex = gguf.tensors.count
                    job.bytesWritten = gguf.tensors.reduce(0) { $0 + $1.byteCount }
                    job.totalBytes = job.bytesWritten
                    return
                }
            }
        }
        logger.warning("job did not finish before the restart", metadata: ["job_id": "\(job.id)", "state": "\(job.state.rawValue)"])
        job.error = "the service restarted before the job finished (it was \(job.state.rawValue))"
        job.state = .failed
    }

    /// Removes `GGUFWriter`'s temporary files of `name` (".NAME.RANDOM.tmp", RANDOM in base 36)
    /// from the open `folder`, left by a job that was killed. Names are compared as bytes.
    private static func removeTemporaryFiles(in folder: Int32, of name: [UInt8], logger: Logger) {
        let copy = fcntl(folder, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0, let stream = fdopendir(copy) else { return }
        defer { closedir(stream) }
        let prefix = [0x2E] + name + [0x2E]
        let suffix = Array(".tmp".utf8)
        var doomed: [[UInt8]] = []
        while let entry = readdir(stream) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            guard entryName.count > prefix.count + suffix.count, entryName.starts(with: prefix),
                  entryName.suffix(suffix.count).elementsEqual(suffix) else { continue }
            let random = entryName[prefix.count ..< entryName.count - suffix.count]
            guard random.allSatisfy({ (0x30 ... 0x39).contains($0) || (0x61 ... 0x7A).contains($0) }) else { continue }
            doomed.append(entryName)
        }
        for entryName in doomed where withCName(entryName, { unlinkat(folder, $0, 0) }) == 0 {
            logger.notice("removed a killed job's temporary file", metadata: ["file": "\(String(decoding: entryName, as: UTF8.self))"])
        }
    }

    /// Job ids: 1 to 256 bytes of printable text.
    static func checkJobID(_ id: String) throws(RPCError) {
        guard !id.isEmpty else { throw .invalidArgument("job_id is empty; choose one (a UUID, say) so that a retried submit is not run twice") }
        guard id.utf8.count <= 256 else { throw .invalidArgument("job_id is \(id.utf8.count) bytes long; the limit is 256") }
        guard !id.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw .invalidArgument("job_id '\(id.debugDescription)' contains control characters")
        }
    }
}
