import SwiftProtobuf

/// A method of a service: its wire name and its request and reply message types.
///
/// The names and types mirror the `service` blocks of `Proto/gemma/v1/*.proto`
/// (`GemmaWireTests` checks that every rpc there has its `RPCMethod` here).
public struct RPCMethod<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>: Sendable, CustomStringConvertible {
    /// "<package>.<Service>/<Method>", as in the envelope: "gemma.v1.Tokenizer/Encode".
    public let name: String

    /// A method called `name` on the wire.
    public init(_ name: String) {
        self.name = name
    }

    public var description: String { name }
}

/// `gemma.v1.Tokenizer` (tokenizer.proto).
public enum TokenizerRPC {
    /// Texts to ids, in a batch.
    public static let encode = RPCMethod<Gemma_V1_EncodeRequest, Gemma_V1_EncodeReply>("gemma.v1.Tokenizer/Encode")
    /// New ids to text deltas for a batch of sequences (stateless: state travels with each call).
    public static let detokenize = RPCMethod<Gemma_V1_DetokenizeRequest, Gemma_V1_DetokenizeReply>("gemma.v1.Tokenizer/Detokenize")
    /// A conversation to Gemma chat prompt text and ids.
    public static let applyChatTemplate = RPCMethod<Gemma_V1_ApplyChatTemplateRequest, Gemma_V1_ApplyChatTemplateReply>("gemma.v1.Tokenizer/ApplyChatTemplate")
    /// Vocabulary size, special ids and model fingerprint.
    public static let info = RPCMethod<Gemma_V1_TokenizerInfoRequest, Gemma_V1_TokenizerInfo>("gemma.v1.Tokenizer/Info")
}

/// `gemma.v1.Shard` (shard.proto).
public enum ShardRPC {
    /// Runs a batch of sequence segments through the stage.
    public static let forward = RPCMethod<Gemma_V1_ForwardRequest, Gemma_V1_ForwardReply>("gemma.v1.Shard/Forward")
    /// Frees the KV cache of ended sequences.
    public static let release = RPCMethod<Gemma_V1_ReleaseRequest, Gemma_V1_ReleaseReply>("gemma.v1.Shard/Release")
    /// Layer range, model fingerprint and KV cache occupancy.
    public static let info = RPCMethod<Gemma_V1_ShardInfoRequest, Gemma_V1_ShardInfo>("gemma.v1.Shard/Info")
}

/// `gemma.v1.Router` (router.proto).
public enum RouterRPC {
    /// A whole completion for one prompt.
    public static let generate = RPCMethod<Gemma_V1_GenerateRequest, Gemma_V1_GenerateReply>("gemma.v1.Router/Generate")
}

/// `gemma.v1.Quantizer` (quantizer.proto).
public enum QuantizerRPC {
    /// Queues a conversion job.
    public static let submitJob = RPCMethod<Gemma_V1_SubmitJobRequest, Gemma_V1_SubmitJobReply>("gemma.v1.Quantizer/SubmitJob")
    /// A job's state and progress.
    public static let jobStatus = RPCMethod<Gemma_V1_JobStatusRequest, Gemma_V1_Job>("gemma.v1.Quantizer/JobStatus")
    /// Stops a queued or running job.
    public static let cancelJob = RPCMethod<Gemma_V1_CancelJobRequest, Gemma_V1_Job>("gemma.v1.Quantizer/CancelJob")
    /// Every known job.
    public static let listJobs = RPCMethod<Gemma_V1_ListJobsRequest, Gemma_V1_ListJobsReply>("gemma.v1.Quantizer/ListJobs")
}

/// Every method above as (name, request type's proto name, reply type's proto name), for
/// checking against the .proto files.
public let allGemmaRPCMethods: [(name: String, request: String, response: String)] = {
    func entry<Req, Resp>(_ method: RPCMethod<Req, Resp>) -> (String, String, String) {
        (method.name, Req.protoMessageName, Resp.protoMessageName)
    }
    return [
        entry(TokenizerRPC.encode), entry(TokenizerRPC.detokenize),
        entry(TokenizerRPC.applyChatTemplate), entry(TokenizerRPC.info),
        entry(ShardRPC.forward), entry(ShardRPC.release), entry(ShardRPC.info),
        entry(RouterRPC.generate),
        entry(QuantizerRPC.submitJob), entry(QuantizerRPC.jobStatus),
        entry(QuantizerRPC.cancelJob), entry(QuantizerRPC.listJobs),
    ]
}()
