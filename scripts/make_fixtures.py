#!/usr/bin/env python3
"""Build the tiny random Gemma v1 reference fixtures under Tests/Fixtures/models/.

What it makes (one directory per model, vocab 1000 to match the test tokenizer):

  tiny-mqa  multi-query attention (4 heads / 1 KV head, head_dim 16, hidden 64, 3 layers),
            bf16 weights sharded over >= 3 safetensors files + model.safetensors.index.json,
            config.json rewritten in the 2024 spelling (top-level rope_theta,
            hidden_act "gelu", torch_dtype "bfloat16").
  tiny-mha  multi-head attention with heads * head_dim != hidden (4 x 24 = 96 vs 48), 2 layers,
            rope_theta 5000, float32 single model.safetensors, current (transformers 5) spelling
            (dtype, rope_parameters.rope_theta, hidden_act + hidden_activation "gelu_pytorch_tanh").
  tiny-gqa  grouped-query attention (4 heads / 2 KV heads, head_dim 16, hidden 64), 2 layers,
            float32 single file, current spelling.

Each directory also gets:
  tokenizer.model          copy of Tests/Fixtures/tokenizer/test-tokenizer.model
  reference-logits.f32     float32 little-endian logits, every position of every prompt,
                           prompts concatenated, row-major [positions, vocab]
  reference.json           prompts, logits offsets (in floats), 24-token greedy continuations
                           and the smallest top1-top2 logit margin seen while decoding

All weights (including the RMSNorm weights, which transformers initialises to zero and which
would hide a missing `1 +`) are random with fixed seeds, so the output is deterministic.
Reference logits come from the checkpoint as saved: it is reloaded with
GemmaForCausalLM.from_pretrained(dir, dtype=torch.float32, attn_implementation="eager").

Run (from the repository root):
    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch transformers sentencepiece safetensors
    /tmp/refvenv/bin/python scripts/make_fixtures.py

Made with transformers 5.23 / torch 2.13 (CPU). The tests that use these files need no PyTorch.
"""

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import GemmaConfig, GemmaForCausalLM

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "Tests" / "Fixtures" / "tokenizer" / "test-tokenizer.model"
OUT = ROOT / "Tests" / "Fixtures" / "models"

VOCAB = 1000
BOS = 2
PROMPT_LENGTHS = [1, 7, 19, 45]
PROMPT_SEED = 1234
NEW_TOKENS = 24
MIN_MARGIN = 1e-3

MODELS = [
    dict(
        name="tiny-mqa",
        seed=110,
        hidden_size=64, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
        intermediate_size=160, num_hidden_layers=3, rope_theta=10000.0,
        embed_std=0.4, proj_std=0.3,
        save_dtype=torch.bfloat16, max_shard_size="60KB", spelling="2024",
    ),
    dict(
        name="tiny-mha",
        seed=208,
        hidden_size=48, num_attention_heads=4, num_key_value_heads=4, head_dim=24,
        intermediate_size=96, num_hidden_layers=2, rope_theta=5000.0,
        embed_std=0.4, proj_std=0.3,
        save_dtype=torch.float32, max_shard_size=None, spelling="current",
    ),
    dict(
        name="tiny-gqa",
        seed=312,
        hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        intermediate_size=128, num_hidden_layers=2, rope_theta=10000.0,
        embed_std=0.4, proj_std=0.3,
        save_dtype=torch.float32, max_shard_size=None, spelling="current",
    ),
]

NORM_STD = 0.5
# Projection std 0.3 (not smaller): with tied embeddings and small projections the residual
# stream is dominated by the token's own embedding, so a random model just repeats its last
# input token under greedy decoding, which would let an engine that ignores attention pass.
# Seeds were picked (by scanning a few) for a smallest greedy top1-top2 margin above 0.01.
MIN_DISTINCT = 8  # fewest distinct tokens allowed in one 24-token greedy continuation


def make_prompts():
    rng = np.random.default_rng(PROMPT_SEED)
    prompts = []
    for n in PROMPT_LENGTHS:
        ids = [BOS] + [int(x) for x in rng.integers(6, VOCAB, size=n - 1)]  # [6, 999]
        prompts.append(ids)
    return prompts


def build_model(spec):
    config = GemmaConfig(
        vocab_size=VOCAB,
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_hidden_layers"],
        num_attention_heads=spec["num_attention_heads"],
        num_key_value_heads=spec["num_key_value_heads"],
        head_dim=spec["head_dim"],
        hidden_act="gelu_pytorch_tanh",
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": spec["rope_theta"]},
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
        tie_word_embeddings=True,
        attn_implementation="eager",
    )
    torch.manual_seed(spec["seed"])
    model = GemmaForCausalLM(config).to(torch.float32)
    gen = torch.Generator().manual_seed(spec["seed"])
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):  # lm_head is tied, listed once
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                std = NORM_STD
            elif name == "model.embed_tokens.weight":
                std = spec["embed_std"]
            else:
                std = spec["proj_std"]
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * std)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


def rewrite_config(path, spec):
    cfg = json.loads(path.read_text())
    if spec["spelling"] == "2024":
        # Mimic google/gemma-*b config.json as published in Feb 2024 (transformers 4.38).
        theta = cfg.get("rope_parameters", {}).get("rope_theta", spec["rope_theta"])
        for k in ("dtype", "rope_parameters", "hidden_activation", "use_bidirectional_attention",
                  "tie_word_embeddings"):
            cfg.pop(k, None)
        cfg["hidden_act"] = "gelu"
        cfg["rope_theta"] = float(theta)
        cfg["rope_scaling"] = None
        cfg["torch_dtype"] = "bfloat16"
    else:
        # transformers 5.23 writes dtype, rope_parameters and hidden_act; the current Google
        # configs also carry hidden_activation, so add it (transformers ignores it).
        assert cfg.get("dtype") == "float32", cfg.get("dtype")
        assert cfg.get("rope_parameters", {}).get("rope_theta") == spec["rope_theta"], cfg
        cfg.setdefault("hidden_act", "gelu_pytorch_tanh")
        cfg["hidden_activation"] = "gelu_pytorch_tanh"
        cfg.pop("torch_dtype", None)
        cfg.pop("rope_theta", None)
    path.write_text(json.dumps(dict(sorted(cfg.items())), indent=2) + "\n")
    return cfg


@torch.no_grad()
def forward_logits(model, ids):
    out = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False)
    return out.logits[0].to(torch.float32)


@torch.no_grad()
def greedy(model, ids):
    """Plain greedy decoding with a full forward pass per step; eos does not stop it."""
    seq = list(ids)
    new, margins = [], []
    for _ in range(NEW_TOKENS):
        last = forward_logits(model, seq)[-1]
        top2 = torch.topk(last, 2)
        tok = int(top2.indices[0])
        assert tok == int(torch.argmax(last))
        margins.append(float(top2.values[0] - top2.values[1]))
        new.append(tok)
        seq.append(tok)
    return new, margins


def make_one(spec, prompts):
    d = OUT / spec["name"]
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)

    model = build_model(spec)
    model = model.to(spec["save_dtype"])
    kwargs = {}
    if spec["max_shard_size"]:
        kwargs["max_shard_size"] = spec["max_shard_size"]
    model.save_pretrained(d, **kwargs)
    saved_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    del model

    # Checks on what was written.
    if spec["max_shard_size"]:
        index = json.loads((d / "model.safetensors.index.json").read_text())
        shards = sorted(set(index["weight_map"].values()))
        assert len(shards) >= 3, shards
        assert all((d / s).exists() for s in shards)
        assert not (d / "model.safetensors").exists()
        names = set(index["weight_map"])
    else:
        from safetensors import safe_open
        assert (d / "model.safetensors").exists()
        assert not (d / "model.safetensors.index.json").exists()
        with safe_open(d / "model.safetensors", "pt") as f:
            names = set(f.keys())
    assert "lm_head.weight" not in names, "tied head must not be saved"

    cfg = rewrite_config(d / "config.json", spec)
    shutil.copyfile(TOKENIZER, d / "tokenizer.model")

    # Reference forward from the checkpoint exactly as written, in f32.
    model = GemmaForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    c = model.config
    assert c.hidden_act == "gelu_pytorch_tanh", c.hidden_act
    assert c.rope_parameters["rope_theta"] == spec["rope_theta"], c.rope_parameters
    assert c.head_dim == spec["head_dim"]
    assert model.model.embed_tokens.weight.dtype == torch.float32
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    for k, v in model.state_dict().items():
        if k in saved_state:
            assert torch.equal(v, saved_state[k].to(torch.float32)), k
    expected_inv = 1.0 / (spec["rope_theta"] ** (torch.arange(0, spec["head_dim"], 2, dtype=torch.float) / spec["head_dim"]))
    assert torch.equal(model.model.rotary_emb.inv_freq, expected_inv)

    all_logits, entries, stds, all_margins = [], [], [], []
    offset = 0
    for ids in prompts:
        logits = forward_logits(model, ids)
        assert logits.shape == (len(ids), VOCAB)
        stds.append(logits.std().item())
        cont, margins = greedy(model, ids)
        assert len(cont) == NEW_TOKENS
        # Cross-check the greedy loop against generate().
        gen = model.generate(
            torch.tensor([ids]), do_sample=False, max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS, eos_token_id=None, pad_token_id=0,
        )[0, len(ids):].tolist()
        assert gen == cont, (gen, cont)
        all_margins += margins
        entries.append({
            "tokens": ids,
            "logits_offset": offset,
            "positions": len(ids),
            "greedy_continuation": cont,
            "min_greedy_margin": round(min(margins), 6),
        })
        all_logits.append(logits.numpy().astype("<f4"))
        offset += logits.numel()

    flat = np.concatenate([x.reshape(-1) for x in all_logits]).astype("<f4")
    assert flat.size == offset
    (d / "reference-logits.f32").write_bytes(flat.tobytes())
    ref = {
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "vocab_size": VOCAB,
        "logits_file": "reference-logits.f32",
        "prompts": entries,
    }
    (d / "reference.json").write_text(json.dumps(ref, indent=2) + "\n")

    all_std = float(np.std(flat))
    min_margin = min(all_margins)
    print(f"{spec['name']}: logit std {all_std:.3f} (per prompt {[round(s, 3) for s in stds]}), "
          f"min greedy margin {min_margin:.4f}, continuations distinct tokens "
          f"{[len(set(e['greedy_continuation'])) for e in entries]}")
    assert 1.0 <= all_std <= 5.0, all_std
    assert min_margin > MIN_MARGIN, f"{spec['name']}: margin {min_margin}, change its seed"
    assert all(len(set(e["greedy_continuation"])) >= MIN_DISTINCT for e in entries), "degenerate greedy"
    return cfg


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    prompts = make_prompts()
    for spec in MODELS:
        make_one(spec, prompts)
    total = 0
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            total += p.stat().st_size
            print(f"{p.stat().st_size:>9}  {p.relative_to(ROOT)}")
    print(f"{total:>9}  total")
    assert total < 3_000_000, total


if __name__ == "__main__":
    sys.exit(main())
