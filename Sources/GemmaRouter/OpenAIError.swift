import Foundation
import GemmaCluster
import GemmaWire
import Hummingbird

/// An error as OpenAI's API reports it: `{"error": {"message", "type", "param", "code"}}` with
/// its HTTP status (and Retry-After for 429).
public struct OpenAIError: Error, HTTPResponseError, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?
    public var retryAfterSeconds: Int?

    public init(_ status: HTTPResponse.Status, _ message: String, type: String = "invalid_request_error",
                param: String? = nil, code: String? = nil, retryAfterSeconds: Int? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retryAfterSeconds = retryAfterSeconds
    }

    /// 400 naming the parameter.
    static func invalid(_ param: String?, _ message: String, code: String? = nil) -> OpenAIError {
        OpenAIError(.badRequest, message, param: param, code: code)
    }

    /// 413 for a request body over `limit` bytes.
    static func tooLarge(limit: Int) -> OpenAIError {
        OpenAIError(.contentTooLarge, "The request body is larger than the \(limit)-byte limit.", code: "request_too_large")
    }

    public var description: String { "\(status.code) \(message.boundedForLog(RequestLimits.maxErrorMessageBytes))" }

    public var json: JSONValue {
        .object([("error", .object([
            ("message", .string(message.boundedForLog(RequestLimits.maxErrorMessageBytes))),
            ("type", .string(type)),
            ("param", param.map(JSONValue.string) ?? .null),
            ("code", code.map(JSONValue.string) ?? .null),
        ]))])
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let retryAfterSeconds { headers[.retryAfter] = String(retryAfterSeconds) }
        return Response(status: status, headers: headers,
                        body: ResponseBody(byteBuffer: ByteBuffer(string: json.serialized)))
    }

    /// The HTTP form of whatever went wrong while serving a request.
    static func from(_ error: Error, promptParam: String) -> OpenAIError {
        switch error {
        case let error as OpenAIError:
            return error
        case let error as ClusterError:
            switch error {
            case let .overloaded(seconds):
                return OpenAIError(.tooManyRequests, error.description, type: "rate_limit_exceeded",
                                   code: "rate_limit_exceeded", retryAfterSeconds: max(1, seconds))
            case .pipelineDown:
                return OpenAIError(.serviceUnavailable, error.description, type: "service_unavailable", code: "pipeline_unavailable")
            case .promptTooLong:
                return OpenAIError(.badRequest, error.description, param: promptParam, code: "context_length_exceeded")
            case .invalidRequest:
                return OpenAIError(.badRequest, error.description)
            }
        case let error as RPCError:
            if error.code == .invalidArgument {
                return OpenAIError(.badRequest, error.message.boundedForLog(), param: promptParam)
            }
            return OpenAIError(.serviceUnavailable, "the tokenizer service is unavailable: \(error)",
                               type: "service_unavailable", code: "tokenizer_unavailable")
        case let error as HTTPError:
            return OpenAIError(error.status, (error.body ?? error.status.reasonPhrase).boundedForLog(),
                               code: error.status == .notFound ? "not_found" : nil)
        case let error as HTTPResponseError where error.status == .contentTooLarge:
            // NIOTooManyBytesError from reading a body past its limit.
            return .tooLarge(limit: RequestLimits.maxBodyBytes)
        default:
            return OpenAIError(.internalServerError, "\(error)".boundedForLog(), type: "internal_error")
        }
    }
}

/// Turns Hummingbird's own errors (unknown path, wrong method, body too large) into OpenAI's error JSON.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as OpenAIError {
            throw error
        } catch let error as HTTPError {
            throw OpenAIError.from(error, promptParam: "prompt")
        }
    }
}
