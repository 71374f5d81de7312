import Foundation

/// Cancels the work of requests whose deadline passed: handlers register a cancel action with
/// their deadline, and one task checks the registered deadlines every few milliseconds, so a
/// request costs no timer or task switch of its own. The task sleeps for good after a second
/// without deadlines to watch.
final class DeadlineWatchdog: @unchecked Sendable {
    /// How often deadlines are checked while requests with deadlines run.
    static let interval: Duration = .milliseconds(5)

    private struct Entry {
        let deadline: RPCDeadline
        let cancel: @Sendable () -> Void
    }

    private let lock = NSLock()
    private var entries: [UInt64: Entry] = [:]
    private var nextToken: UInt64 = 1
    private var idleWaiter: CheckedContinuation<Void, Never>?

    /// Calls `cancel` (once) soon after `deadline` passes, unless unwatched first. Returns a
    /// token for `unwatch`; a missing deadline is not watched.
    func watch(_ deadline: RPCDeadline, cancel: @escaping @Sendable () -> Void) -> UInt64 {
        guard deadline.isSet else { return 0 }
        lock.lock()
        let token = nextToken
        nextToken += 1
        entries[token] = Entry(deadline: deadline, cancel: cancel)
        let waiter = idleWaiter
        idleWaiter = nil
        lock.unlock()
        waiter?.resume()  // only after a quiet second
        return token
    }

    /// Stops watching (the work finished).
    func unwatch(_ token: UInt64) {
        guard token != 0 else { return }
        lock.lock()
        entries[token] = nil
        lock.unlock()
    }

    /// Checks deadlines until the task is cancelled.
    func run() async {
        var lastBusy = ContinuousClock.now
        while !Task.isCancelled {
            if isIdle {
                if ContinuousClock.now - lastBusy > .seconds(1) {
                    await waitForWork()
                    lastBusy = ContinuousClock.now
                    continue
                }
            } else {
                lastBusy = ContinuousClock.now
            }
            try? await Task.sleep(for: Self.interval)
            for entry in takeExpired() { entry.cancel() }
        }
    }

    private var isIdle: Bool {
        lock.lock()
        defer { lock.unlock() }
        return entries.isEmpty
    }

    private func takeExpired() -> [Entry] {
        let now = RPCDeadline.nowMicros()
        lock.lock()
        defer { lock.unlock() }
        let expired = entries.filter { $0.value.deadline.unixMicros <= now }
        for token in expired.keys { entries[token] = nil }
        return Array(expired.values)
    }

    /// Returns once something is watched, or the task is cancelled.
    private func waitForWork() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                lock.lock()
                if !entries.isEmpty || Task.isCancelled {
                    lock.unlock()
                    continuation.resume()
                    return
                }
                idleWaiter = continuation
                lock.unlock()
            }
        } onCancel: {
            lock.lock()
            let waiter = idleWaiter
            idleWaiter = nil
            lock.unlock()
            waiter?.resume()
        }
    }
}
