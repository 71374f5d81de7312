import Foundation
import GemmaShardService
@testable import GemmaWire
import GemmaTestSupport
import XCTest

/// The compute thread: one job at a time, in order, off Swift's cooperative pool; deadlines.
final class ComputeThreadTests: XCTestCase {
    func testJobsRunOneAtATimeOnTheirOwnThread() async throws {
        let compute = ComputeThread(name: "test-compute")
        defer { compute.shutdown() }
        let probe = Probe()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0 ..< 16 {
                group.addTask {
                    try await compute.run {
                        probe.enter(i)
                        usleep(2000)
                        probe.leave()
                    }
                }
            }
            try await group.waitForAll()
        }
        XCTAssertEqual(probe.highest, 1, "jobs overlapped")
        XCTAssertEqual(probe.threads, ["test-compute"])
        XCTAssertEqual(probe.order.count, 16)
    }

    func testAJobWhoseDeadlinePassedWhileWaitingIsNotStarted() async throws {
        let compute = ComputeThread()
        defer { compute.shutdown() }
        let gate = DispatchSemaphore(value: 0)
        let blocker = Task { try await compute.run { gate.wait() } }
        try await waitUntil { compute.isBusy }
        let ran = Flag()
        let late = Task { try await compute.run(deadline: .after(.milliseconds(20))) { ran.set() } }
        try await Task.sleep(for: .milliseconds(60))
        gate.signal()
        try await blocker.value
        await assertRPCError(.deadlineExceeded) { try await late.value }
        XCTAssertFalse(ran.value, "a job past its deadline ran")
        // The thread goes on.
        let value = try await compute.run(deadline: .after(.seconds(10))) { 42 }
        XCTAssertEqual(value, 42)
    }

    func testACancelledWaitingJobLeavesTheQueue() async throws {
        let compute = ComputeThread()
        defer { compute.shutdown() }
        let gate = DispatchSemaphore(value: 0)
        let blocker = Task { try await compute.run { gate.wait() } }
        try await waitUntil { compute.isBusy }
        let ran = Flag()
        let waiting = Task { try await compute.run { ran.set() } }
        try await waitUntil { compute.waiting == 1 }
        waiting.cancel()
        await assertRPCError(.cancelled) { try await waiting.value }
        XCTAssertEqual(compute.waiting, 0)
        gate.signal()
        try await blocker.value
        XCTAssertFalse(ran.value)
    }

    func testShutdownFailsWaitingJobsAndLaterOnes() async throws {
        let compute = ComputeThread()
        let gate = DispatchSemaphore(value: 0)
        let blocker = Task { try await compute.run { gate.wait(); return 1 } }
        try await waitUntil { compute.isBusy }
        let waiting = Task { try await compute.run { 2 } }
        try await waitUntil { compute.waiting == 1 }
        // shutdown() blocks until the running job ends: call it from a thread of its own.
        let stopped = Flag()
        Thread.detachNewThread {
            compute.shutdown()
            stopped.set()
        }
        await assertRPCError(.unavailable) { try await waiting.value }
        XCTAssertFalse(stopped.value, "shutdown returned while a job ran")
        gate.signal()
        let first = try await blocker.value
        XCTAssertEqual(first, 1, "the running job finishes")
        try await waitUntil { stopped.value }
        await assertRPCError(.unavailable) { try await compute.run { 3 } }
    }
}

private final class Probe: @unchecked Sendable {
    private let lock = NSLock()
    private var running = 0
    private(set) var highest = 0
    private(set) var threads = Set<String>()
    private(set) var order: [Int] = []

    func enter(_ index: Int) {
        lock.withLock {
            running += 1
            highest = max(highest, running)
            threads.insert(Thread.current.name ?? "?")
            order.append(index)
        }
    }

    func leave() {
        lock.withLock { running -= 1 }
    }
}

private final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var isSet = false

    func set() { lock.withLock { isSet = true } }
    var value: Bool { lock.withLock { isSet } }
}

/// Waits (polling, at most 10 s) until `condition` holds.
func waitUntil(_ condition: () -> Bool) async throws {
    let giveUp = ContinuousClock.now + .seconds(10)
    while !condition() {
        guard ContinuousClock.now < giveUp else { throw ShardTestError("timed out waiting for a condition") }
        try await Task.sleep(for: .milliseconds(2))
    }
}
