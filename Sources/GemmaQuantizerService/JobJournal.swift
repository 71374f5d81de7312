import Foundation

/// The list of a quantizer service's jobs, kept as JSON in the models directory so that a
/// restarted service still knows them (and reports the ones it did not finish as failed).
///
/// Every save writes a temporary file, flushes it to disk and renames it over the journal, so
/// the journal on disk is always a whole version, old or new.
public struct JobJournal: Sendable {
    /// The journal file.
    public let path: String

    /// The journal at `path` (which need not exist yet).
    public init(path: String) {
        self.path = path
    }

    private struct Contents: Codable {
        var version = 1
        var jobs: [QuantizerJob]
    }

    /// The jobs saved, oldest first; none when there is no journal yet.
    ///
    /// - Throws: `JobJournalError` naming the file when it cannot be read or parsed.
    public func load() throws -> [QuantizerJob] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw JobJournalError(path: path, problem: "cannot read it")
        }
        do {
            let contents = try JSONDecoder().decode(Contents.self, from: data)
            guard contents.version == 1 else {
                throw JobJournalError(path: path, problem: "version \(contents.version) is not known (expected 1)")
            }
            return contents.jobs
        } catch let error as JobJournalError {
            throw error
        } catch {
            throw JobJournalError(path: path, problem: "not a job journal (\(error)); move it away to start with no job history")
        }
    }

    /// Replaces the journal with `jobs`, atomically.
    ///
    /// - Throws: `JobJournalError` naming the file and the system's reason.
    public func save(_ jobs: [QuantizerJob]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data: Data
        do {
            data = try encoder.encode(Contents(jobs: jobs))
        } catch {
            throw JobJournalError(path: path, problem: "cannot encode the jobs: \(error)")
        }
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw systemError("cannot create \(temporary)") }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == data.count, synced == 0 else {
            let error = systemError("cannot write \(temporary)")
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let error = systemError("cannot rename \(temporary) over the journal")
            unlink(temporary)
            throw error
        }
    }

    private func systemError(_ what: String) -> JobJournalError {
        JobJournalError(path: path, problem: "\(what): \(String(cString: strerror(errno)))")
    }
}

/// A job journal that cannot be read or written.
public struct JobJournalError: Error, CustomStringConvertible {
    /// The journal file.
    public let path: String
    /// What went wrong.
    public let problem: String

    public var description: String { "job journal \(path): \(problem)" }
}
