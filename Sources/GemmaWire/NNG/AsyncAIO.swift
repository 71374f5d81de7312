import CNNG
import Foundation

/// The continuation of the task waiting on one aio, shared with nng's callback thread.
private final class AIOCompletion: @unchecked Sendable {
    private let lock = NSLock()
    private var waiter: CheckedContinuation<Int32, Never>?
    /// Set once, right after the aio is allocated (before any operation can complete).
    var aio: OpaquePointer?

    func setWaiter(_ continuation: CheckedContinuation<Int32, Never>) {
        lock.lock()
        waiter = continuation
        lock.unlock()
    }

    /// Runs on nng's thread: hands the result to the waiting task and returns at once.
    func complete() {
        resume(with: nng_aio_result(aio))
    }

    /// Resumes the waiting task with `result` (once).
    func resume(with result: Int32) {
        lock.lock()
        let continuation = waiter
        waiter = nil
        lock.unlock()
        continuation?.resume(returning: result)
    }
}

/// nng's completion callback: never blocks, never frees or restarts the aio; the task that
/// resumes does that.
private func aioCompletionCallback(_ argument: UnsafeMutableRawPointer?) {
    guard let argument else { return }
    Unmanaged<AIOCompletion>.fromOpaque(argument).takeUnretainedValue().complete()
}

/// One `nng_aio` driven with async/await: `perform` starts an operation and suspends the
/// calling task (no thread waits) until nng's callback reports the result.
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

    /// Starts an operation on this aio with `start` (for example `nng_ctx_recv(ctx, aio)`)
    /// and waits for it. Returns nng's result: 0, `NNG_ETIMEDOUT` after `timeout`,
    /// `NNG_ECANCELED` when the task was cancelled, `NNG_ECLOSED`, ... `start` returns
    /// false when it could not start the operation (its socket is closed): that is `NNG_ECLOSED`.
    func perform(timeout: nng_duration, _ start: (OpaquePointer) -> Bool) async -> Int32 {
        nng_aio_set_timeout(handle, timeout)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
                completion.setWaiter(continuation)
                guard start(handle) else {
                    completion.resume(with: NNGError.closed)
                    return
                }
                // A cancellation that arrived before the operation started found nothing to cancel.
                if Task.isCancelled { nng_aio_cancel(handle) }
            }
        } onCancel: {
            nng_aio_cancel(self.handle)
        }
    }
}
