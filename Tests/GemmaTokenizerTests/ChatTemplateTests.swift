import XCTest
@testable import GemmaTokenizer

/// The Gemma chat template renders exactly llama.cpp's text and rejects malformed conversations.
final class ChatTemplateTests: XCTestCase {
    let tokenizer = TokenizerFixtures.tokenizer

    private func user(_ text: String) -> ChatMessage { ChatMessage(role: .user, content: text) }
    private func model(_ text: String) -> ChatMessage { ChatMessage(role: .model, content: text) }
    private func system(_ text: String) -> ChatMessage { ChatMessage(role: .system, content: text) }

    func testUserModelUserWithGenerationPrompt() throws {
        let text = try tokenizer.renderChat([user("Hello"), model("Hi there"), user("How are you?")],
                                            addGenerationPrompt: true)
        XCTAssertEqual(text, """
            <start_of_turn>user
            Hello<end_of_turn>
            <start_of_turn>model
            Hi there<end_of_turn>
            <start_of_turn>user
            How are you?<end_of_turn>
            <start_of_turn>model

            """)
    }

    func testUserModelUserWithoutGenerationPrompt() throws {
        let text = try tokenizer.renderChat([user("Hello"), model("Hi there"), user("How are you?")],
                                            addGenerationPrompt: false)
        XCTAssertEqual(text, "<start_of_turn>user\nHello<end_of_turn>\n"
                           + "<start_of_turn>model\nHi there<end_of_turn>\n"
                           + "<start_of_turn>user\nHow are you?<end_of_turn>\n")
    }

    func testConversationEndingWithModelTurn() throws {
        let text = try tokenizer.renderChat([user("a"), model("b")], addGenerationPrompt: false)
        XCTAssertEqual(text, "<start_of_turn>user\na<end_of_turn>\n<start_of_turn>model\nb<end_of_turn>\n")
    }

    func testAssistantIsModel() throws {
        let messages = try [ChatMessage(role: "user", content: "Hello"),
                            ChatMessage(role: "assistant", content: "Hi"),
                            ChatMessage(role: "user", content: "Bye")]
        XCTAssertEqual(messages[1].role, .model)
        XCTAssertEqual(try tokenizer.renderChat(messages, addGenerationPrompt: true),
                       try tokenizer.renderChat([user("Hello"), model("Hi"), user("Bye")], addGenerationPrompt: true))
        XCTAssertTrue(try tokenizer.renderChat(messages, addGenerationPrompt: false)
            .contains("<start_of_turn>model\nHi<end_of_turn>\n"))
    }

    func testSystemIsFoldedIntoFirstUserTurn() throws {
        let text = try tokenizer.renderChat([system("You are terse."), user("Hello"), model("Hi"), user("Bye")],
                                            addGenerationPrompt: true)
        XCTAssertEqual(text, "<start_of_turn>user\nYou are terse.\n\nHello<end_of_turn>\n"
                           + "<start_of_turn>model\nHi<end_of_turn>\n"
                           + "<start_of_turn>user\nBye<end_of_turn>\n"
                           + "<start_of_turn>model\n")
    }

    func testContentIsTrimmedOfASCIIWhitespaceLikeLlamaCpp() throws {
        let text = try tokenizer.renderChat([system(" \t Be kind.\n"), user("\r\n  Hi  there \u{0B}\u{0C}\n")],
                                            addGenerationPrompt: true)
        XCTAssertEqual(text, "<start_of_turn>user\nBe kind.\n\nHi  there<end_of_turn>\n<start_of_turn>model\n")
        // Only C isspace characters are trimmed; a no-break space or ideographic space stays.
        let kept = try tokenizer.renderChat([user("\u{00A0}x\u{3000}")], addGenerationPrompt: false)
        XCTAssertEqual(kept, "<start_of_turn>user\n\u{00A0}x\u{3000}<end_of_turn>\n")
    }

    func testSeveralSystemMessagesConcatenateAndBlankOnesVanish() throws {
        XCTAssertEqual(try tokenizer.renderChat([system("A "), system(" B"), user("u")], addGenerationPrompt: false),
                       "<start_of_turn>user\nAB\n\nu<end_of_turn>\n")
        XCTAssertEqual(try tokenizer.renderChat([system(" \n "), user("u")], addGenerationPrompt: false),
                       "<start_of_turn>user\nu<end_of_turn>\n")
    }

    func testRenderedPromptMatchesTheFixtureAndEncodesWithBOS() throws {
        let fixture = try XCTUnwrap(TokenizerFixtures.expected.encode.first { $0.name == "chat_prompt" })
        let messages = [user("What is 2+2?"), model("4."), user("And in base 3? 🤔")]
        XCTAssertEqual(try tokenizer.renderChat(messages, addGenerationPrompt: true), fixture.text)
        let ids = try tokenizer.encodeChat(messages, addGenerationPrompt: true)
        XCTAssertEqual(ids, [tokenizer.bos] + fixture.ids)
        XCTAssertEqual(ids.filter { $0 == tokenizer.startOfTurn }.count, 4)
        XCTAssertEqual(ids.filter { $0 == tokenizer.endOfTurn }.count, 3)
        XCTAssertEqual(tokenizer.decode(ids), fixture.text)
    }

    func testUnknownRoleIsRejected() {
        XCTAssertThrowsError(try ChatMessage(role: "tool", content: "x")) { error in
            XCTAssertEqual(error as? TokenizerError, .unknownChatRole("tool"))
            XCTAssertTrue("\(error)".contains("\"tool\""))
        }
        XCTAssertThrowsError(try ChatMessage(role: "User", content: "x"))
    }

    func testMalformedConversationsAreRejected() {
        let bad: [(String, [ChatMessage], Bool)] = [
            ("empty", [], true),
            ("only system", [system("s")], true),
            ("model first", [model("m"), user("u")], true),
            ("two users", [user("a"), user("b")], true),
            ("two models", [user("a"), model("b"), model("c")], false),
            ("late system", [user("a"), system("s"), model("b")], false),
            ("prompt after model", [user("a"), model("b")], true),
        ]
        for (name, messages, generationPrompt) in bad {
            XCTAssertThrowsError(try tokenizer.renderChat(messages, addGenerationPrompt: generationPrompt), name) { error in
                guard case .invalidConversation(let reason)? = error as? TokenizerError else {
                    return XCTFail("\(name): unexpected error \(error)")
                }
                XCTAssertFalse(reason.isEmpty, name)
            }
            XCTAssertThrowsError(try tokenizer.encodeChat(messages, addGenerationPrompt: generationPrompt), name)
        }
    }
}
