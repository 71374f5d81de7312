#!/usr/bin/env python3
"""Greedy and sampled continuations from the tiny-shakespeare model with transformers.

Plain prompts are '<bos>' + text; chat prompts use the Gemma template
  <bos><start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n
Generation stops at <eos> or <end_of_turn> (shown as such in the output).

Usage: python scripts/shakespeare/sample.py [--model Models/tiny-shakespeare] [--max-new 120]
"""
import argparse
import os

import sentencepiece as spm
import torch
from transformers import GemmaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

PLAIN = ["ROMEO:\n", "HAMLET:\nTo be, or not to be", "KING HENRY V:\n"]
CHAT = ["What light through yonder window breaks?",
        "Good morrow, my lord. How fares the king?",
        "MACBETH:\nIs this a dagger which I see before me?"]


def chat_prompt(text):
    return f"<start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(REPO, "Models/tiny-shakespeare"))
    ap.add_argument("--max-new", type=int, default=120)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-k", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.model, "tokenizer.model"))
    model = GemmaForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    eot = sp.piece_to_id("<end_of_turn>")
    stops = [sp.eos_id(), eot]

    def run(prompt, sample):
        ids = torch.tensor([[sp.bos_id()] + sp.encode(prompt)])
        kw = dict(do_sample=True, temperature=args.temperature, top_k=args.top_k) if sample else dict(do_sample=False)
        out = model.generate(ids, max_new_tokens=args.max_new, eos_token_id=stops, pad_token_id=sp.pad_id(), **kw)
        new = out[0, ids.shape[1]:].tolist()
        stopped = new and new[-1] in stops
        body = new[:-1] if stopped else new
        tail = f"[{sp.id_to_piece(new[-1])}]" if stopped else f"[... {len(new)} tokens, no stop]"
        return sp.decode(body) + tail

    torch.manual_seed(args.seed)
    for kind, prompts, wrap in (("plain", PLAIN, lambda t: t), ("chat", CHAT, chat_prompt)):
        for p in prompts:
            for sample in (False, True):
                print(f"===== {kind} {'sampled (T=%.1f, top-k %d)' % (args.temperature, args.top_k) if sample else 'greedy'}"
                      f" | prompt: {p!r}")
                print(wrap(p) + run(wrap(p), sample))
                print()


if __name__ == "__main__":
    main()
