#!/usr/bin/env python3
"""Train the tiny-shakespeare Gemma model on CPU (PyTorch + transformers' GemmaForCausalLM).

Architecture: Gemma v1 with multi-query attention, hidden 256, 6 layers, intermediate 768,
4 heads x head_dim 64, 1 KV head, context 256, vocab 4096, rope_theta 10000, tied embeddings
(about 5.6 M parameters).

Data (from make_corpus.py, default /tmp/shakespeare):
  * plain batches: 255-token windows at random offsets of train.txt, each preceded by <bos>;
  * chat batches (every third batch): consecutive speeches of one scene in the Gemma chat
    template, exchanges packed into one conversation while they fit in 256 tokens,
        <bos><start_of_turn>user\n{speech}<end_of_turn>\n<start_of_turn>model\n{next speech}<end_of_turn>\n...
    the user's speech keeps its 'NAME:' line 30 % of the time (so that both a bare line and a
    'NAME:' line get an answer), the model's answer never has it (it answers in character);
    the rest of the sequence is padding, left out of the loss.

AdamW, linear warmup then cosine decay over the wall-clock budget (--minutes), f32 weights.
--init-from DIR continues training from a saved checkpoint instead of a random init: its weights
are loaded with dtype=torch.float32 (its config must be the architecture above, its tokenizer.model
is the default --tokenizer), the AdamW state is fresh and the same warmup + cosine schedule runs
over the new budget with peak --lr (about 1e-3 suits a continuation). Give it another --seed than
the first run so that it draws other windows and conversations.
The learning-rate schedule follows the elapsed time, so two runs of the same seed differ in
how many steps they make; the data order for a given step count is fixed by --seed.
At the end: held-out perplexity (llama.cpp definition, see reference_perplexity.py) and
save_pretrained in bf16 safetensors with tokenizer.model next to it.

Usage:
  python scripts/shakespeare/train.py --minutes 2 --threads 2 --out /tmp/shakespeare/sanity
  python scripts/shakespeare/train.py --minutes 45 --threads 2 --out Models/tiny-shakespeare
  python scripts/shakespeare/train.py --init-from Models/tiny-shakespeare --seed 1235 --lr 1e-3 \
      --minutes 50 --threads 2 --out /tmp/shakespeare/continued
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import sentencepiece as spm
import torch
import transformers
from transformers import GemmaConfig, GemmaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from reference_perplexity import llama_cpp_perplexity  # noqa: E402

CTX = 256


def make_config(vocab_size, bos, eos, pad):
    return GemmaConfig(
        vocab_size=vocab_size,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=64,
        hidden_act="gelu_pytorch_tanh",
        max_position_embeddings=CTX,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=True,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
        attention_bias=False,
        attention_dropout=0.0,
    )


class Data:
    def __init__(self, sp, data_dir, seed, user_name_prob=0.3):
        self.sp = sp
        self.bos = sp.bos_id()
        self.pad = sp.pad_id()
        self.sot = sp.piece_to_id("<start_of_turn>")
        self.eot = sp.piece_to_id("<end_of_turn>")
        self.nl = sp.piece_to_id("\n")
        assert self.nl != sp.unk_id() and self.eot != sp.unk_id()
        self.user = sp.encode("user\n")
        self.model = sp.encode("model\n")
        self.rng = random.Random(seed)
        self.user_name_prob = user_name_prob
        text = open(os.path.join(data_dir, "train.txt"), encoding="utf-8").read()
        self.train = np.array(sp.encode(text), dtype=np.int64)
        scenes = json.load(open(os.path.join(data_dir, "speeches.json"), encoding="utf-8"))["train"]
        # pre-tokenised speeches: (name line tokens, text tokens)
        self.scenes = []
        for sc in scenes:
            sp_list = [(sp.encode(s["speaker"] + ":\n"), sp.encode(s["text"])) for s in sc["speeches"]]
            if len(sp_list) >= 2:
                self.scenes.append(sp_list)
        self.n_speeches = sum(len(s) for s in self.scenes)

    def exchange(self, user, model, with_name):
        u = (user[0] if with_name else []) + user[1]
        return ([self.sot] + self.user + u + [self.eot, self.nl]
                + [self.sot] + self.model + model[1] + [self.eot, self.nl])

    def plain_batch(self, bsz):
        ids = np.empty((bsz, CTX), dtype=np.int64)
        for b in range(bsz):
            off = self.rng.randrange(0, len(self.train) - CTX)
            ids[b, 0] = self.bos
            ids[b, 1:] = self.train[off:off + CTX - 1]
        ids = torch.from_numpy(ids)
        return ids, ids.clone()

    def chat_sequence(self):
        while True:
            scene = self.rng.choice(self.scenes)
            i = self.rng.randrange(0, len(scene) - 1)
            seq = [self.bos]
            while i + 1 < len(scene):
                ex = self.exchange(scene[i], scene[i + 1], self.rng.random() < self.user_name_prob)
                if len(seq) + len(ex) > CTX:
                    break
                seq += ex
                i += 2
            if len(seq) > 1:
                return seq

    def chat_batch(self, bsz):
        ids = torch.full((bsz, CTX), self.pad, dtype=torch.long)
        labels = torch.full((bsz, CTX), -100, dtype=torch.long)
        for b in range(bsz):
            seq = self.chat_sequence()
            ids[b, :len(seq)] = torch.tensor(seq)
            labels[b, :len(seq)] = torch.tensor(seq)
        return ids, labels


def lr_at(frac, peak, warmup_frac, min_ratio):
    if frac < warmup_frac:
        return peak * frac / warmup_frac
    p = min(1.0, (frac - warmup_frac) / (1 - warmup_frac))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


@torch.no_grad()
def quick_eval(model, chunks):
    """Mean next-token NLL over fixed held-out 256-token chunks (all positions)."""
    model.eval()
    out = model(input_ids=chunks, labels=chunks)
    model.train()
    return out.loss.item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, required=True, help="wall-clock training budget")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--data", default="/tmp/shakespeare")
    ap.add_argument("--tokenizer", default=None,
                    help="SentencePiece model (default: DIR/tokenizer.model with --init-from DIR, "
                         "else Models/tiny-shakespeare/tokenizer.model)")
    ap.add_argument("--init-from", default=None, metavar="DIR",
                    help="start from this checkpoint's weights (loaded in f32) instead of a random init; "
                         "fresh optimizer, same schedule over --minutes")
    ap.add_argument("--out", default=os.path.join(REPO, "Models/tiny-shakespeare"))
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup-frac", type=float, default=0.03)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--chat-every", type=int, default=3, help="every n-th batch is a chat batch")
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--eval-minutes", type=float, default=5.0)
    args = ap.parse_args()
    if args.tokenizer is None:
        args.tokenizer = (os.path.join(args.init_from, "tokenizer.model") if args.init_from
                          else os.path.join(REPO, "Models/tiny-shakespeare/tokenizer.model"))

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    sp = spm.SentencePieceProcessor(model_file=args.tokenizer)
    data = Data(sp, args.data, args.seed)
    heldout_text = open(os.path.join(args.data, "heldout.txt"), encoding="utf-8").read()
    held = sp.encode(heldout_text)
    # 16 fixed held-out chunks, spread over the three plays, for the periodic check
    starts = np.linspace(0, len(held) - CTX, 16).astype(int)
    eval_chunks = torch.tensor([[sp.bos_id()] + held[s:s + CTX - 1] for s in starts])

    cfg = make_config(sp.get_piece_size(), sp.bos_id(), sp.eos_id(), sp.pad_id())
    if args.init_from:
        model = GemmaForCausalLM.from_pretrained(args.init_from, dtype=torch.float32)
        got, want = model.config.to_dict(), cfg.to_dict()
        for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps",
                  "rope_parameters", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id"):
            if got.get(k) != want.get(k):
                sys.exit(f"--init-from {args.init_from}: config {k} = {got.get(k)!r}, expected {want.get(k)!r}")
        assert all(p.dtype == torch.float32 for p in model.parameters())
        print(f"initialised from {args.init_from} (f32)")
    else:
        model = GemmaForCausalLM(cfg)  # f32
    n_params = sum(p.numel() for p in model.parameters())
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, threads {args.threads}")
    print(f"parameters: {n_params:,} (tied embedding {cfg.vocab_size * cfg.hidden_size:,})")
    print(f"train tokens {len(data.train):,}, chat scenes {len(data.scenes)} ({data.n_speeches} speeches), "
          f"held-out tokens {len(held):,}")
    print(json.dumps(vars(args)))

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 and "embed" not in n else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=0.0, betas=(0.9, 0.95), eps=1e-8)

    budget = args.minutes * 60
    model.train()
    t0 = time.time()
    last_eval = t0
    step = 0
    tokens = 0
    win = {"plain": [], "chat": []}
    win_tokens, win_t = 0, time.time()
    print(f"step 0: held-out loss {quick_eval(model, eval_chunks):.4f}", flush=True)
    while True:
        elapsed = time.time() - t0
        frac = elapsed / budget
        if frac >= 1.0:
            break
        lr = lr_at(frac, args.lr, args.warmup_frac, args.min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = lr
        kind = "chat" if step % args.chat_every == args.chat_every - 1 else "plain"
        ids, labels = data.chat_batch(args.batch_size) if kind == "chat" else data.plain_batch(args.batch_size)
        out = model(input_ids=ids, labels=labels)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        n_tok = int((labels != -100).sum())
        tokens += n_tok
        win_tokens += ids.numel()
        win[kind].append(out.loss.item())
        if step % args.log_every == 0:
            now = time.time()
            pl = np.mean(win["plain"]) if win["plain"] else float("nan")
            ch = np.mean(win["chat"]) if win["chat"] else float("nan")
            print(f"step {step} t {now - t0:7.1f}s lr {lr:.2e} loss plain {pl:.4f} chat {ch:.4f} "
                  f"gnorm {gnorm:.2f} tok/s {win_tokens / (now - win_t):.0f} tokens {tokens:,}", flush=True)
            win = {"plain": [], "chat": []}
            win_tokens, win_t = 0, now
        if time.time() - last_eval > args.eval_minutes * 60:
            last_eval = time.time()
            print(f"step {step}: held-out loss (16 chunks) {quick_eval(model, eval_chunks):.4f}", flush=True)

    train_time = time.time() - t0
    print(f"done: {step} steps, {tokens:,} loss tokens, {train_time / 60:.1f} min, "
          f"{tokens / train_time:.0f} tok/s overall", flush=True)

    model.eval()
    res = llama_cpp_perplexity(model, [sp.bos_id()] + held, sp.bos_id(), CTX)
    print(f"held-out perplexity (f32 weights, llama.cpp definition, {res['chunks']} chunks of {CTX}): "
          f"{res['perplexity']:.3f} +/- {res['perplexity_stderr']:.3f}", flush=True)

    os.makedirs(args.out, exist_ok=True)
    model.generation_config.eos_token_id = [sp.eos_id(), sp.piece_to_id("<end_of_turn>")]
    model.generation_config.bos_token_id = sp.bos_id()
    model.generation_config.pad_token_id = sp.pad_id()
    model.to(torch.bfloat16).save_pretrained(args.out)
    os.chmod(os.path.join(args.out, "model.safetensors"), 0o644)  # written 0600 otherwise
    if os.path.abspath(args.tokenizer) != os.path.abspath(os.path.join(args.out, "tokenizer.model")):
        shutil.copy(args.tokenizer, os.path.join(args.out, "tokenizer.model"))
    json.dump({"steps": step, "train_minutes": round(train_time / 60, 2), "loss_tokens": tokens,
               "heldout_perplexity_f32": res["perplexity"], "parameters": n_params,
               "args": vars(args)},
              open(os.path.join(args.data, "trainstats.json"), "w"), indent=1)
    print(f"saved bf16 model to {args.out}", flush=True)


if __name__ == "__main__":
    main()
