import Foundation
import GemmaWire

/// Which stage replicas are up, shared by every lane: a replica goes down the moment its
/// connection closes (nng pipe events), when a call to it finds no connection, or when it
/// misses a heartbeat, and comes back up only when it answers Info again. Lanes never send to
/// a replica that is down: they move to another replica of the stage (re-prefilling their
/// sequences there), or wait for one to come back, up to `recovery_seconds`.
extension PipelineScheduler {
    /// Follows every replica's connection and starts the heartbeat.
    func startHealthChecks() {
        for (s, replicas) in stages.enumerated() {
            for (r, client) in replicas.enumerated() {
                client.onConnectionChange { [weak self] connected in
                    guard !connected, let self else { return }
                    Task { await self.markDown(stage: s, replica: r, reason: "its connection closed") }
                }
            }
        }
        guard config.scheduling.heartbeatSeconds > 0 else { return }
        healthTask = Task { [weak self] in
            while let self, await self.running, !Task.isCancelled {
                let anyDown = await self.heartbeat()
                let pause = anyDown ? min(0.25, self.config.scheduling.heartbeatSeconds) : self.config.scheduling.heartbeatSeconds
                try? await Task.sleep(for: .milliseconds(Int64(pause * 1000)))
            }
        }
    }

    /// Asks every replica for Info at once; returns whether any replica is still down.
    func heartbeat() async -> Bool {
        let timeout = Duration.milliseconds(Int64(config.scheduling.heartbeatSeconds * 2000))
        let stages = self.stages
        let answers = await withTaskGroup(of: (Int, Int, Bool).self) { group in
            for (s, replicas) in stages.enumerated() {
                for (r, client) in replicas.enumerated() {
                    group.addTask {
                        let answered = (try? await client.call(ShardRPC.info, .init(), timeout: timeout)) != nil
                        return (s, r, answered)
                    }
                }
            }
            var all: [(Int, Int, Bool)] = []
            for await answer in group { all.append(answer) }
            return all
        }
        for (s, r, answered) in answers {
            if answered {
                markUp(stage: s, replica: r)
            } else if replicaUp[s][r] {
                markDown(stage: s, replica: r, reason: "it did not answer a heartbeat within \(timeout)")
                stages[s][r].abortCalls()
            }
        }
        return replicaUp.contains { $0.contains(false) }
    }

    func markDown(stage s: Int, replica r: Int, reason: String) {
        guard replicaUp[s][r] else { return }
        replicaUp[s][r] = false
        logger.warning("stage replica down", metadata: [
            "stage": "\(s)", "layers": "\(config.stages[s].layers)", "replica": "\(config.stages[s].replicas[r])",
            "reason": "\(reason)"])
    }

    func markUp(stage s: Int, replica r: Int) {
        guard !replicaUp[s][r] else { return }
        replicaUp[s][r] = true
        logger.notice("stage replica up", metadata: [
            "stage": "\(s)", "layers": "\(config.stages[s].layers)", "replica": "\(config.stages[s].replicas[r])"])
        for lane in 0..<laneCount { wake(lane) }
    }

    /// Moves `lane` off replicas that are down, to the next replica of the stage that is up
    /// (its sequences are then prefilled again there). Returns a stage none of whose replicas
    /// is up, if any.
    func relocate(_ lane: Int) -> Int? {
        var moved = false
        for s in stages.indices where !replicaUp[s][laneReplicas[lane][s]] {
            let count = stages[s].count
            let current = laneReplicas[lane][s]
            guard let live = (1...count).lazy.map({ (current + $0) % count }).first(where: { self.replicaUp[s][$0] }) else {
                return s
            }
            laneReplicas[lane][s] = live
            moved = true
        }
        if moved {
            for id in sequences.keys where sequences[id]?.lane == lane { sequences[id]?.cached = 0 }
        }
        return nil
    }

    /// The next replica of stage `s` after the lane's current one, preferring replicas that are up.
    func nextReplica(of s: Int, after current: Int) -> Int {
        let count = stages[s].count
        let order = (1...count).map { (current + $0) % count }
        return order.first { replicaUp[s][$0] } ?? order[0]
    }

    /// Whether `lane` has sequences to run.
    func hasWork(_ lane: Int) -> Bool {
        sequences.values.contains { $0.lane == lane && !$0.cancelled && $0.history.count > $0.cached }
    }

    /// Ends the lane's sequences with an error once it has waited `recovery_seconds` for a
    /// replica of `stage` to come up.
    func giveUpIfWaitedTooLong(_ lane: Int, stage: Int) {
        let now = ContinuousClock.now
        let since = laneFailingSince[lane] ?? now
        laneFailingSince[lane] = since
        guard now - since > .milliseconds(Int64(config.scheduling.recoverySeconds * 1000)) else { return }
        for id in sequences.keys.sorted() {
            guard let s = sequences[id], s.lane == lane, !s.inFlight else { continue }
            s.continuation.finish(throwing: ClusterError.pipelineDown(
                "stage \(stage) (layers \(config.stages[stage].layers)) has had no replica up for \(config.scheduling.recoverySeconds) s"))
            remove(id)
        }
        laneFailingSince[lane] = nil
    }
}
