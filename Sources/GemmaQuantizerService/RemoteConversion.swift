import Foundation
import GemmaWire

/// A conversion run by a quantizer service: submits the job, then follows it with JobStatus
/// calls until it ends. Leaving early (the caller's task cancelled, the process killed) does
/// not stop the job; submitting the same request again follows it again.
public struct RemoteConversion: Sendable {
    /// The service.
    public let client: RPCClient
    /// Time between status calls.
    public var pollInterval: Duration
    /// Deadline of each call.
    public var callTimeout: Duration
    /// How long status calls may keep failing (service restarting, network) before giving up.
    public var patience: Duration

    /// Follows jobs on `client`'s service.
    public init(client: RPCClient, pollInterval: Duration = .milliseconds(250),
                callTimeout: Duration = .seconds(30), patience: Duration = .seconds(60)) {
        self.client = client
        self.pollInterval = pollInterval
        self.callTimeout = callTimeout
        self.patience = patience
    }

    /// Submits `request` (an existing job with its id is followed instead), calls `update`
    /// with the job after the submit and after every status call, and returns the job once it
    /// succeeded, failed or was cancelled.
    ///
    /// - Throws: `RPCError` of the submit, or of the status calls once they failed for longer
    ///   than `patience`; CANCELLED when the task is cancelled.
    public func run(_ request: Gemma_V1_SubmitJobRequest, update: (Gemma_V1_Job) -> Void = { _ in }) async throws(RPCError) -> Gemma_V1_Job {
        var job = try await client.call(QuantizerRPC.submitJob, request, timeout: callTimeout).job
        update(job)
        var statusRequest = Gemma_V1_JobStatusRequest()
        statusRequest.jobID = request.jobID
        var lastSuccess = ContinuousClock.now
        while !Self.isFinal(job.state) {
            do {
                try await Task.sleep(for: pollInterval)
            } catch {
                throw RPCError(.cancelled, "stopped following job '\(request.jobID)'; the job goes on")
            }
            do {
                job = try await client.call(QuantizerRPC.jobStatus, statusRequest, timeout: callTimeout)
                lastSuccess = .now
                update(job)
            } catch where [.unavailable, .deadlineExceeded].contains(error.code) && ContinuousClock.now - lastSuccess < patience {
                continue
            }
        }
        return job
    }

    /// Whether a job in `state` will not change any more.
    public static func isFinal(_ state: Gemma_V1_Job.State) -> Bool {
        state == .succeeded || state == .failed || state == .cancelled
    }
}
