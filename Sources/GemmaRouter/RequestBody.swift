import Foundation
import Hummingbird

extension OpenAIRouter {
    /// The body of a completions request as a JSON object, refused before use when it is too
    /// large (413: by its Content-Length before reading, or while reading one sent without it),
    /// nested too deeply, not JSON or not UTF-8 (400).
    static func readJSONBody(_ request: Request, limit: Int = RequestLimits.maxBodyBytes) async throws -> JSONValue {
        if let declared = request.headers[.contentLength] {
            let digits = declared.trimmingCharacters(in: .whitespaces)
            let isNumber = !digits.isEmpty && digits.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
            // All digits but no Int: more than Int.max bytes announced.
            if isNumber, (Int(digits) ?? .max) > limit { throw OpenAIError.tooLarge(limit: limit) }
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: limit)
        } catch let error as HTTPResponseError where error.status == .contentTooLarge {
            // NIOTooManyBytesError: the body went past `limit` while being read.
            throw OpenAIError.tooLarge(limit: limit)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            // The client stopped sending (closed, or stalled past the idle timeout): its fault, not ours.
            throw OpenAIError.invalid(nil, "The request body could not be read: it ended before its length.")
        }
        let json: JSONValue
        do {
            json = try JSONValue.parse(Data(body.readableBytesView), maxDepth: RequestLimits.maxJSONDepth)
        } catch .tooDeep(let depth) {
            throw OpenAIError.invalid(nil, "The request body nests arrays and objects more than \(depth) levels deep.",
                                      code: "json_too_deep")
        } catch {
            throw OpenAIError.invalid(nil, "The request body is not valid JSON (in UTF-8).")
        }
        guard case .object = json else { throw OpenAIError.invalid(nil, "The request body must be a JSON object.") }
        return json
    }
}
