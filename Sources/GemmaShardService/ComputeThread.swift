import Foundation
import GemmaWire

/// One dedicated OS thread that runs jobs one at a time, first come first served.
///
/// A stage's forward passes run here rather than on Swift concurrency's cooperative pool:
/// a batch can keep a core busy for seconds, and the pool's few threads must stay free for
/// the RPC loops, the deadline watchdog and the shutdown signal. One thread also serializes
/// every use of the engine (its KV caches are not thread-safe), so concurrent RPCs queue.
///
/// A job whose deadline passed while it waited is not started (DEADLINE_EXCEEDED), and a
/// waiting job whose task is cancelled leaves the queue; a job that started runs to its end.
public final class ComputeThread: @unchecked Sendable {
    private final class Job {
        let deadline: RPCDeadline
        /// Runs the work and resumes the caller.
        let run: () -> Void
        /// Resumes the caller with an error without running the work.
        let abandon: (RPCError) -> Void

        init(deadline: RPCDeadline, run: @escaping () -> Void, abandon: @escaping (RPCError) -> Void) {
            self.deadline = deadline
            self.run = run
            self.abandon = abandon
        }
    }

    private let condition = NSCondition()
    private var queue: [(id: UInt64, job: Job)] = []
    private var nextID: UInt64 = 1
    private var stopped = false
    private var finished = false
    private var running = 0
    /// The name the thread shows in debuggers and `top -H` (Linux keeps 15 bytes of it).
    public let name: String

    /// Starts the thread.
    public init(name: String = "shard-compute") {
        self.name = String(name.utf8.prefix(15)) ?? "shard-compute"
        let thread = Thread { [self] in
            // Linux names a thread only from inside it, and only with at most 15 bytes.
            Thread.current.name = self.name
            loop()
        }
        thread.stackSize = 16 << 20
        thread.start()
    }

    /// Jobs waiting (not counting the one running).
    public var waiting: Int {
        condition.lock()
        defer { condition.unlock() }
        return queue.count
    }

    /// Whether a job is running now.
    public var isBusy: Bool {
        condition.lock()
        defer { condition.unlock() }
        return running > 0
    }

    /// Runs `work` on the thread after the jobs before it, and returns its result.
    ///
    /// - Throws: what `work` throws; `RPCError` DEADLINE_EXCEEDED when `deadline` passed
    ///   before the job's turn, CANCELLED when the task was cancelled while waiting,
    ///   UNAVAILABLE after `shutdown()`.
    public func run<T: Sendable>(deadline: RPCDeadline = .none,
                                 _ work: @escaping @Sendable () throws -> T) async throws -> T {
        let box = JobID()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                let job = Job(deadline: deadline, run: {
                    continuation.resume(with: Result { try work() })
                }, abandon: { error in
                    continuation.resume(throwing: error)
                })
                condition.lock()
                if stopped {
                    condition.unlock()
                    job.abandon(RPCError(.unavailable, "the shard is shutting down; retry on another replica"))
                    return
                }
                if Task.isCancelled {
                    condition.unlock()
                    job.abandon(RPCError(.cancelled, "the call was cancelled before its batch started"))
                    return
                }
                let id = nextID
                nextID += 1
                box.set(id)
                queue.append((id, job))
                condition.signal()
                condition.unlock()
            }
        } onCancel: {
            guard let id = box.value else { return }
            condition.lock()
            let index = queue.firstIndex { $0.id == id }
            let job = index.map { queue.remove(at: $0).job }
            condition.unlock()
            job?.abandon(RPCError(.cancelled, "the call was cancelled before its batch started"))
        }
    }

    /// Stops taking jobs: waiting ones fail with UNAVAILABLE, the running one finishes, then
    /// the thread ends. Returns once it has.
    public func shutdown() {
        condition.lock()
        stopped = true
        let abandoned = queue.map(\.job)
        queue.removeAll()
        condition.broadcast()
        condition.unlock()
        for job in abandoned {
            job.abandon(RPCError(.unavailable, "the shard is shutting down; retry on another replica"))
        }
        condition.lock()
        while !finished { condition.wait() }
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopped { condition.wait() }
            if queue.isEmpty {
                finished = true
                condition.broadcast()
                condition.unlock()
                return
            }
            let job = queue.removeFirst().job
            running += 1
            condition.unlock()
            if job.deadline.hasPassed {
                job.abandon(RPCError(.deadlineExceeded, "the deadline passed (\(job.deadline)) while the batch waited for the compute thread; it was not started"))
            } else {
                job.run()
            }
            condition.lock()
            running -= 1
            condition.unlock()
        }
    }
}

/// The queue id of a job, set once it is queued (read by the cancellation handler).
private final class JobID: @unchecked Sendable {
    private let lock = NSLock()
    private var id: UInt64?

    func set(_ value: UInt64) {
        lock.withLock { id = value }
    }

    var value: UInt64? {
        lock.withLock { id }
    }
}
