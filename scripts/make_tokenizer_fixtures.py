#!/usr/bin/env python3
"""Records Python sentencepiece's answers for the Swift tokenizer tests.

Encodes a list of awkward strings with the committed test tokenizer
Tests/Fixtures/tokenizer/test-tokenizer.model (trained by scripts/make_test_tokenizer.sh)
and writes Tests/Fixtures/tokenizer/expected.json with, for each string, its ids (no BOS),
their pieces and Python's decode of those ids. It also records Python's decode of a few
hand-made id sequences (control ids, unknown, truncated or invalid byte-fallback runs),
decodes under normalizer settings that drop a leading space, and the model's special ids. Tests/GemmaTokenizerTests compare the Swift tokenizer against it.

Run from anywhere, with a Python that has `sentencepiece` installed:

    /tmp/refvenv/bin/python scripts/make_tokenizer_fixtures.py

The output is deterministic; commit it together with any change to the model or this list.
"""

import json
import pathlib

import sentencepiece

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "Tests" / "Fixtures" / "tokenizer"
MODEL = FIXTURES / "test-tokenizer.model"
OUTPUT = FIXTURES / "expected.json"

# The Gemma chat prompt for user / model / user with a generation prompt, as
# GemmaChatTemplate renders it (without <bos>).
CHAT_PROMPT = (
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
    "<start_of_turn>model\n4.<end_of_turn>\n"
    "<start_of_turn>user\nAnd in base 3? 🤔<end_of_turn>\n"
    "<start_of_turn>model\n"
)

STRINGS = [
    ("empty", ""),
    ("one_space", " "),
    ("two_spaces", "  "),
    ("three_spaces", "   "),
    ("four_spaces", "    "),
    ("five_spaces", "     "),
    ("six_spaces", "      "),
    ("seven_spaces", "       "),
    ("eight_spaces", "        "),
    ("leading_spaces", "   leading"),
    ("trailing_spaces", "trailing    "),
    ("inner_space_runs", "a b  c   d    e     f      g       h        i"),
    ("word", "hello"),
    ("sentence", "The quick brown fox jumps over the lazy dog."),
    ("digits", "12345"),
    ("pi", "3.14159"),
    ("thousands", "1,000,000"),
    ("digits_in_text", "In 2024, 17 of 256000 tokens cost $3.50."),
    ("emoji", "🙂🚀"),
    ("emoji_zwj_family", "👨‍👩‍👧‍👦"),
    ("emoji_zwj_astronaut", "🧑🏽‍🚀 lands"),
    ("emoji_flags", "🇯🇵🇩🇪🇺🇳"),
    ("emoji_skin_tone", "👍🏿 ok"),
    ("emoji_keycap", "1️⃣#️⃣"),
    ("cjk_japanese", "日本語のテキスト"),
    ("cjk_chinese", "中文文本。你好，世界！"),
    ("korean", "한국어 텍스트입니다"),
    ("accented_latin", "café naïve crème brûlée Ångström façade"),
    ("combining_marks", "e\u0301 a\u0300 n\u0303"),
    ("tabs", "\tone\t\ttwo\t\t\tthree"),
    ("newlines", "line one\nline two\n\nline four\n"),
    ("crlf", "windows\r\nline\r\n"),
    ("mixed_whitespace", " \t \n \r\n \u00a0 \u3000 end"),
    ("chat_markers", "<start_of_turn>user\nHi<end_of_turn>\n"),
    ("chat_marker_glued", "x<end_of_turn><start_of_turn>y"),
    ("marker_lookalike", "<start_of_turn <end_of_turn> <start_of_turnx>"),
    ("byte_fallback_rare_cjk", "龘靐齉𠀋𪚥"),
    ("byte_fallback_emoji", "🦄🪐🫠"),
    ("byte_fallback_cyrillic", "Привет, мир"),
    ("byte_fallback_arabic", "مرحبا بالعالم"),
    ("byte_fallback_devanagari", "नमस्ते दुनिया"),
    ("byte_fallback_math", "∀x∈ℝ: x² ≥ 0 ∎"),
    ("nul_and_controls", "a\u0000b\u0007c\u001bd"),
    ("replacement_char", "bad \ufffd char"),
    ("private_use_and_bmp_edge", "\ue000\uffff\U0010ffff"),
    (
        "long_paragraph",
        "Licensed under the Apache License, Version 2.0 (the \"License\"); you may not use "
        "this file except in compliance with the License.  日本語も少し、한국어도 조금. "
        "Prices: 3.14159 × 1,000,000 = 3141590 — naïve café 🙂🚀👨‍👩‍👧‍👦.\n\tIndented\r\n"
        "    four spaces, Привет, مرحبا, 龘 and <end_of_turn> inline.   ",
    ),
    ("chat_prompt", CHAT_PROMPT),
]


def byte_id(sp, value):
    return sp.piece_to_id("<0x%02X>" % value)


def decode_cases(sp):
    """Id sequences that encoding never produces but a model can generate."""
    b = lambda *values: [byte_id(sp, v) for v in values]  # noqa: E731
    word = sp.piece_to_id("▁the")
    return [
        ("control_ids", [sp.bos_id(), *sp.encode("hi"), sp.eos_id(), sp.pad_id()]),
        ("unknown", [sp.unk_id(), *sp.encode("x"), sp.unk_id()]),
        ("user_defined", [sp.piece_to_id("<start_of_turn>"), sp.piece_to_id("<end_of_turn>")]),
        ("emoji_as_bytes", b(0xF0, 0x9F, 0xA6, 0x84)),
        ("truncated_emoji_at_end", b(0xF0, 0x9F, 0xA6)),
        ("truncated_emoji_then_text", b(0xF0, 0x9F) + [word] + b(0x84)),
        ("lone_continuation_bytes", b(0x80, 0xBF, 0x41)),
        ("overlong_and_surrogate", b(0xC0, 0x80, 0xED, 0xA0, 0x80, 0xE0, 0x80)),
        ("invalid_lead_bytes", b(0xF5, 0xF8, 0xFF, 0x41)),
        ("replacement_char_bytes", b(0xEF, 0xBF, 0xBD)),
        ("split_then_interrupted", b(0xE6, 0x97) + [sp.bos_id()] + b(0xA5)),
        ("bytes_around_control", b(0xC3) + [sp.eos_id()] + b(0xA9)),
        ("leading_space_symbol", [word, word]),
    ]


def to_json(fixture):
    """Pretty JSON with one line per case, so that diffs show which case changed."""
    def dump(value):
        return json.dumps(value, ensure_ascii=False)

    lines = ["{"]
    keys = list(fixture)
    for n, key in enumerate(keys):
        comma = "," if n + 1 < len(keys) else ""
        value = fixture[key]
        if isinstance(value, list):
            lines.append(f" {dump(key)}: [")
            lines += [f"  {dump(item)}" + ("," if i + 1 < len(value) else "") for i, item in enumerate(value)]
            lines.append(f" ]{comma}")
        else:
            lines.append(f" {dump(key)}: {dump(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


# Appending a second normalizer_spec (ModelProto field 3) to the serialized model merges into
# the first, which turns on a setting that makes Decode drop a leading U+2581. The Swift
# tests apply the same suffix and compare their decoding with these answers.
NORMALIZER_VARIANTS = [
    ("add_dummy_prefix", bytes([0x1A, 0x02, 0x18, 0x01])),  # NormalizerSpec field 3 = true
    ("remove_extra_whitespaces", bytes([0x1A, 0x02, 0x20, 0x01])),  # NormalizerSpec field 4 = true
]


def variant_decodes(sp, text_sample):
    """Decodes, under each normalizer variant, id sequences that start with spaces."""
    raw = MODEL.read_bytes()
    ids_of = sp.piece_to_id
    sequences = [
        ("two_words", [ids_of("▁the"), ids_of("▁the")]),
        ("space_then_word", [ids_of("▁"), ids_of("▁the")]),
        ("two_spaces_then_word", [ids_of("▁"), ids_of("▁"), ids_of("▁the")]),
        ("double_space_piece", [ids_of("▁▁"), ids_of("▁the")]),
        ("bos_then_word", [sp.bos_id(), ids_of("▁the")]),
        ("byte_then_word", [ids_of("<0x41>"), ids_of("▁the")]),
        ("unknown_then_word", [sp.unk_id(), ids_of("▁the")]),
        ("user_defined_then_word", [ids_of("<start_of_turn>"), ids_of("▁the")]),
        ("sample_text", sp.encode(text_sample)),
    ]
    variants = []
    for name, suffix in NORMALIZER_VARIANTS:
        variant = sentencepiece.SentencePieceProcessor()
        variant.load_from_serialized_proto(raw + suffix)
        variants.append({
            "name": name,
            "suffix": list(suffix),
            "cases": [{"name": n, "ids": ids, "decoded": variant.decode(ids)} for n, ids in sequences],
        })
    return variants


def main():
    sp = sentencepiece.SentencePieceProcessor(model_file=str(MODEL))
    cases = []
    for name, text in STRINGS:
        ids = sp.encode(text)
        cases.append({
            "name": name,
            "text": text,
            "ids": ids,
            "pieces": [sp.id_to_piece(i) for i in ids],
            "decoded": sp.decode(ids),
        })
    decodes = [{"name": name, "ids": ids, "decoded": sp.decode(ids)} for name, ids in decode_cases(sp)]
    fixture = {
        "generator": "scripts/make_tokenizer_fixtures.py",
        "model": MODEL.relative_to(ROOT).as_posix(),
        "sentencepiece_version": sentencepiece.__version__,
        "vocab_size": sp.vocab_size(),
        "special": {
            "bos": sp.bos_id(),
            "eos": sp.eos_id(),
            "pad": sp.pad_id(),
            "unk": sp.unk_id(),
            "start_of_turn": sp.piece_to_id("<start_of_turn>"),
            "end_of_turn": sp.piece_to_id("<end_of_turn>"),
        },
        "encode": cases,
        "decode": decodes,
        "decode_variants": variant_decodes(sp, "  two leading spaces, then 🦄 and text"),
    }
    OUTPUT.write_text(to_json(fixture), encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}: {len(cases)} strings, {len(decodes)} decode cases, "
          f"{len(NORMALIZER_VARIANTS)} normalizer variants")


if __name__ == "__main__":
    main()
