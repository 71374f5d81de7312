import Foundation
import GemmaTokenizer
import GemmaTokenizerService
import GemmaWire
import GemmaTestSupport
import XCTest

/// The Tokenizer service over the wire agrees with GemmaTokenizer.
final class TokenizerServiceTests: XCTestCase {
    let tokenizer = WireFixtures.tokenizer

    struct Expected: Decodable {
        struct EncodeCase: Decodable {
            let name, text: String
            let ids: [Int32]
        }
        struct DecodeCase: Decodable {
            let name: String
            let ids: [Int32]
            let decoded: String
        }
        struct Variant: Decodable {
            let name: String
            let suffix: [UInt8]
            let cases: [DecodeCase]
        }
        let encode: [EncodeCase]
        let decode: [DecodeCase]
        let decode_variants: [Variant]
    }

    static let expected: Expected = {
        let url = WireFixtures.packageRoot.appendingPathComponent("Tests/Fixtures/tokenizer/expected.json")
        return try! JSONDecoder().decode(Expected.self, from: Data(contentsOf: url))
    }()

    private func startService(_ url: String? = nil) throws -> (RunningServer, RPCClient) {
        let service = try TokenizerService(contentsOf: WireFixtures.tokenizerModelPath)
        let running = try RunningServer(url: url ?? WireFixtures.ipcURL("tokenizer")) { service.register(on: $0) }
        let client = try RPCClient(url: running.url)
        addTeardownBlock {
            client.close()
            await running.stop()
        }
        return (running, client)
    }

    func testEncodeMatchesGemmaTokenizerInOneBatch() async throws {
        let (_, client) = try startService()
        let texts = Self.expected.encode.map(\.text) + ["<start_of_turn>user\nhi<end_of_turn>\n"]
        for addBOS in [false, true] {
            var request = Gemma_V1_EncodeRequest()
            request.texts = texts
            request.addBos = addBOS
            let reply = try await client.call(TokenizerRPC.encode, request, timeout: .seconds(10))
            XCTAssertEqual(reply.sequences.count, texts.count)
            for (text, sequence) in zip(texts, reply.sequences) {
                XCTAssertEqual(sequence.ids, tokenizer.encode(text, addBOS: addBOS), text)
            }
        }
        // And Python sentencepiece's ids, through the service.
        var request = Gemma_V1_EncodeRequest()
        request.texts = Self.expected.encode.map(\.text)
        let reply = try await client.call(TokenizerRPC.encode, request, timeout: .seconds(10))
        XCTAssertEqual(reply.sequences.map(\.ids), Self.expected.encode.map(\.ids))
    }

    /// Streams every sequence through Detokenize, all sequences in each call, `chunk(i)` new
    /// ids per sequence per call; returns each sequence's joined text.
    private func streamBatched(_ sequences: [[Int32]], client: RPCClient,
                               chunk: (Int) -> Int) async throws -> [String] {
        var texts = [String](repeating: "", count: sequences.count)
        var offsets = [Int](repeating: 0, count: sequences.count)
        var states = [(pending: Data, started: Bool)](repeating: (Data(), false), count: sequences.count)
        var finished = Set<Int>()
        var round = 0
        while finished.count < sequences.count {
            var request = Gemma_V1_DetokenizeRequest()
            var members: [Int] = []
            for index in sequences.indices where !finished.contains(index) {
                let count = chunk(index + round)
                let end = min(sequences[index].count, offsets[index] + count)
                var entry = Gemma_V1_DetokenizeSequence()
                entry.sequenceID = UInt64(1000 + index)
                entry.tokenIds = Array(sequences[index][offsets[index] ..< end])
                entry.pending = states[index].pending
                entry.started = states[index].started
                entry.finish = end == sequences[index].count
                offsets[index] = end
                request.sequences.append(entry)
                members.append(index)
            }
            let reply = try await client.call(TokenizerRPC.detokenize, request, timeout: .seconds(10))
            XCTAssertEqual(reply.sequences.count, members.count)
            for (index, result) in zip(members, reply.sequences) {
                XCTAssertEqual(result.sequenceID, UInt64(1000 + index))
                XCTAssertLessThanOrEqual(result.pending.count, 3)
                texts[index] += result.text
                states[index] = (result.pending, result.started)
                if request.sequences[members.firstIndex(of: index)!].finish {
                    finished.insert(index)
                    XCTAssertTrue(result.pending.isEmpty)
                }
            }
            round += 1
        }
        return texts
    }

    func testBatchedDetokenizeReproducesDecodeAcrossByteSplitEmoji() async throws {
        let (_, client) = try startService()
        var sequences = Self.expected.encode.map(\.ids) + Self.expected.decode.map(\.ids)
        sequences += Self.expected.encode.map { [tokenizer.bos] + $0.ids + [tokenizer.eos] }
        let emoji = tokenizer.encode("🦄 a🙂🚀b 👨‍👩‍👧‍👦", addBOS: false)
        XCTAssertTrue(emoji.contains { tokenizer.piece(for: $0)?.hasPrefix("<0x") ?? false }, "the emoji should be byte pieces")
        sequences.append(emoji)
        // A character cut short: its bytes come out as U+FFFD at the end.
        sequences.append([0xF0, 0x9F, 0xA6].map { tokenizer.id(forPiece: String(format: "<0x%02X>", $0))! })
        for chunkSizes in [[1], [2], [3], [1, 4, 2, 7]] {
            let texts = try await streamBatched(sequences, client: client) { chunkSizes[$0 % chunkSizes.count] }
            for (ids, text) in zip(sequences, texts) {
                XCTAssertEqual(text, tokenizer.decode(ids), "chunks \(chunkSizes): \(ids)")
            }
        }
    }

    func testStatelessDetokenizerFollowsNormalizerVariants() throws {
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: WireFixtures.tokenizerModelPath)))
        for variant in Self.expected.decode_variants {
            let variantTokenizer = try GemmaTokenizer(serializedModel: original + variant.suffix, source: variant.name)
            let detokenizer = StatelessDetokenizer(tokenizer: variantTokenizer)
            for fixture in variant.cases {
                for size in 1 ... 3 {
                    var state = StatelessDetokenizer.State.initial
                    var text = ""
                    var offset = 0
                    repeat {
                        let end = min(fixture.ids.count, offset + size)
                        let step = try detokenizer.step(Array(fixture.ids[offset ..< end]), state: state,
                                                        finish: end == fixture.ids.count)
                        text += step.text
                        state = step.state
                        offset = end
                    } while offset < fixture.ids.count
                    XCTAssertEqual(text, fixture.decoded, "\(variant.name) \(fixture.name) in steps of \(size)")
                }
            }
        }
    }

    func testDetokenizeRejectsPendingBytesThatAreNoUnfinishedCharacter() async throws {
        let (_, client) = try startService()
        for pending in [Data([0x41]), Data([0xF0, 0x9F, 0xA6, 0x84]), Data([0x80])] {
            var entry = Gemma_V1_DetokenizeSequence()
            entry.sequenceID = 5
            entry.pending = pending
            entry.started = true
            var request = Gemma_V1_DetokenizeRequest()
            request.sequences = [entry]
            let error = await assertRPCError(.invalidArgument) {
                try await client.call(TokenizerRPC.detokenize, request, timeout: .seconds(5))
            }
            XCTAssertTrue(error?.message.contains("sequence_id 5") ?? false, error?.message ?? "")
        }
    }

    func testApplyChatTemplateMatchesGemmaTokenizer() async throws {
        let (_, client) = try startService()
        var request = Gemma_V1_ApplyChatTemplateRequest()
        request.messages = [("system", "Be brief."), ("user", "Hello"), ("assistant", "Hi!"), ("user", "Bye")].map {
            var message = Gemma_V1_ChatMessage()
            message.role = $0.0
            message.content = $0.1
            return message
        }
        request.addGenerationPrompt = true
        let reply = try await client.call(TokenizerRPC.applyChatTemplate, request, timeout: .seconds(5))
        let messages = try request.messages.map { try ChatMessage(role: $0.role, content: $0.content) }
        XCTAssertEqual(reply.text, try tokenizer.renderChat(messages, addGenerationPrompt: true))
        XCTAssertEqual(reply.ids, try tokenizer.encodeChat(messages, addGenerationPrompt: true))

        request.messages[1].role = "narrator"
        let error = await assertRPCError(.invalidArgument) {
            try await client.call(TokenizerRPC.applyChatTemplate, request, timeout: .seconds(5))
        }
        XCTAssertTrue(error?.message.contains("narrator") ?? false, error?.message ?? "")
    }

    func testInfoReportsSpecialIdsAndFingerprint() async throws {
        let (_, client) = try startService()
        let info = try await client.call(TokenizerRPC.info, Gemma_V1_TokenizerInfoRequest(), timeout: .seconds(5))
        XCTAssertEqual(Int(info.vocabSize), tokenizer.vocabularySize)
        XCTAssertEqual(info.bosID, tokenizer.bos)
        XCTAssertEqual(info.eosID, tokenizer.eos)
        XCTAssertEqual(info.padID, tokenizer.pad ?? -1)
        XCTAssertEqual(info.startOfTurnID, tokenizer.startOfTurn ?? -1)
        XCTAssertEqual(info.endOfTurnID, tokenizer.endOfTurn ?? -1)
        XCTAssertEqual(info.stopIds, tokenizer.stopTokens)
        // `sha256sum Tests/Fixtures/tokenizer/test-tokenizer.model`
        XCTAssertEqual(info.modelFingerprint, "264ac85abdfd0eb2c6a63ff876f25e9a6ec5ab9df324e36eb593f0a126d2e500")
    }

    func testConcurrentClients() async throws {
        let (running, _) = try startService("tcp://127.0.0.1:0")
        let texts = Self.expected.encode.map(\.text)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for clientIndex in 0 ..< 4 {
                group.addTask {
                    let client = try RPCClient(url: running.url)
                    defer { client.close() }
                    for call in 0 ..< 20 {
                        let text = texts[(clientIndex * 20 + call) % texts.count]
                        var request = Gemma_V1_EncodeRequest()
                        request.texts = [text]
                        let reply = try await client.call(TokenizerRPC.encode, request, timeout: .seconds(10))
                        XCTAssertEqual(reply.sequences.first?.ids, self.tokenizer.encode(text, addBOS: false))
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}

/// SHA-256 against FIPS 180-4's examples.
final class SHA256Tests: XCTestCase {
    func testKnownDigests() {
        XCTAssertEqual(SHA256.hexDigest(of: []), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hexDigest(of: Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hexDigest(of: Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256.hexDigest(of: [UInt8](repeating: 0x61, count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testPiecewiseUpdatesEqualOneUpdate() {
        let bytes = (0 ..< 1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        for split in [0, 1, 63, 64, 65, 500, 999] {
            var hash = SHA256()
            hash.update(bytes[..<split])
            bytes[split...].withUnsafeBytes { hash.update($0) }
            XCTAssertEqual(hash.hexDigest(), SHA256.hexDigest(of: bytes), "split at \(split)")
        }
    }
}
