import CNNG
import Foundation

/// The state of one aio's current operation, shared with nng's callback thread.
private final class AIOCompletion: @unchecked Sendable {
    private enum State {
        case idle
        /// Started; the task waiting for it, if it waits already.
        case running(CheckedContinuation<Int32, Never>?)
        /// Finished before anyone waited.
        case finished(Int32)
    }

    private let lock = NSLock()
    private var state = State.idle
    /// Set once, right after the aio is allocated (before any operation can complete).
    var aio: OpaquePointer?

    func begin() {
        lock.lock()
        state = .running(nil)
        lock.unlock()
    }

    /// Runs on nng's thread: hands the result on and returns at once.
    func complete() {
        finish(with: nng_aio_result(aio))
    }

    /// Records the operation's result and resumes its waiter, if any.
    func finish(with result: Int32) {
        lock.lock()
        switch state {
        case .running(let waiter?):
            state = .idle
            lock.unlock()
            waiter.resume(returning: result)
        default:
            state = .finished(result)
            lock.unlock()
        }
    }

    /// Waits for the current operation's result.
    func wait(_ continuation: CheckedContinuation<Int32, Never>) {
        lock.lock()
        switch state {
        case .finished(let result):
            state = .idle
            lock.unlock()
            continuation.resume(returning: result)
        case .running:
            state = .running(continuation)
            lock.unlock()
        case .idle:
            lock.unlock()
            continuation.resume(returning: Int32(NNG_ESTATE.rawValue))
        }
    }
}

/// nng's completion callback: never blocks, never frees or restarts the aio; the task that
/// resumes does that.
private func aioCompletionCallback(_ argument: UnsafeMutableRawPointer?) {
    guard let argument else { return }
    Unmanaged<AIOCompletion>.fromOpaque(argument).takeUnretainedValue().complete()
}

/// One `nng_aio` driven with async/await: `start` begins an operation, `result()` suspends
/// the calling task (no thread waits) until nng's callback reports it; `perform` does both.
///
/// One operation at a time. Freed (after any running callback returns) when the last
/// reference goes, which is always on a task, never inside the callback.
final class AsyncAIO: @unchecked Sendable {
    let handle: OpaquePointer
    private let completion: AIOCompletion

    init() throws(NNGError) {
        let completion = AIOCompletion()
        var aio: OpaquePointer?
        let argument = Unmanaged.passUnretained(completion).toOpaque()
        try nngCheck(nng_aio_alloc(&aio, aioCompletionCallback, argument), "nng_aio_alloc")
        guard let aio else { throw NNGError(operation: "nng_aio_alloc", code: Int32(NNG_ENOMEM.rawValue)) }
        completion.aio = aio
        self.handle = aio
        self.completion = completion
    }

    deinit {
        nng_aio_free(handle)
    }

    /// Begins an operation with `start` (for example `nng_ctx_recv(ctx, aio)`), to finish
    /// within `timeout`. `start` returns false when it could not begin the operation (its
    /// socket is closed); the result is then `NNG_ECLOSED`.
    func start(timeout: nng_duration, _ start: (OpaquePointer) -> Bool) {
        nng_aio_set_timeout(handle, timeout)
        completion.begin()
        if !start(handle) {
            completion.finish(with: NNGError.closed)
        }
    }

    /// Waits for the operation begun with `start`: 0, `NNG_ETIMEDOUT`, `NNG_ECANCELED` when
    /// the task was cancelled, `NNG_ECLOSED`, ...
    func result() async -> Int32 {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
                completion.wait(continuation)
                // A cancellation that came before we waited found nothing to cancel.
                if Task.isCancelled { nng_aio_cancel(handle) }
            }
        } onCancel: {
            nng_aio_cancel(self.handle)
        }
    }

    /// Cancels the running operation, if any (from any thread but nng's callbacks).
    func cancel() {
        nng_aio_cancel(handle)
    }

    /// `start` then `result()`.
    func perform(timeout: nng_duration, _ start: (OpaquePointer) -> Bool) async -> Int32 {
        self.start(timeout: timeout, start)
        return await result()
    }
}
