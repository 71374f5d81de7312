#!/usr/bin/env python3
"""Writes a full-size random Gemma v1 checkpoint in the Hugging Face layout (config.json,
bf16 safetensors shards with model.safetensors.index.json, and a tokenizer.model) for
benchmarks. Weights are N(0, 0.02); norm weights N(0, 0.1). Never commit the output.

Needs only numpy (no PyTorch). The tokenizer is the bundled model's (vocabulary 4096) unless
--tokenizer names another; token ids above its vocabulary simply never occur in prompts.

    python3 scripts/bench/make_random_checkpoint.py --size 2b --out bench-models/gemma-2b-random
"""
import argparse
import json
import os
import shutil
import struct

import numpy as np

SIZES = {
    "2b": dict(hidden_size=2048, intermediate_size=16384, num_hidden_layers=18,
               num_attention_heads=8, num_key_value_heads=1, head_dim=256),
    "7b": dict(hidden_size=3072, intermediate_size=24576, num_hidden_layers=28,
               num_attention_heads=16, num_key_value_heads=16, head_dim=256),
}
VOCAB = 256000
SHARD_BYTES = 2 * 1024 ** 3


def bf16_bytes(array):
    """float32 -> bf16 (round to nearest even) little-endian bytes."""
    bits = array.astype(np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return rounded.tobytes()


def tensors(cfg, rng):
    h, f = cfg["hidden_size"], cfg["intermediate_size"]
    q = cfg["num_attention_heads"] * cfg["head_dim"]
    kv = cfg["num_key_value_heads"] * cfg["head_dim"]
    yield "model.embed_tokens.weight", (VOCAB, h), 0.02
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", (h,), 0.1
        yield p + "self_attn.q_proj.weight", (q, h), 0.02
        yield p + "self_attn.k_proj.weight", (kv, h), 0.02
        yield p + "self_attn.v_proj.weight", (kv, h), 0.02
        yield p + "self_attn.o_proj.weight", (h, q), 0.02
        yield p + "post_attention_layernorm.weight", (h,), 0.1
        yield p + "mlp.gate_proj.weight", (f, h), 0.02
        yield p + "mlp.up_proj.weight", (f, h), 0.02
        yield p + "mlp.down_proj.weight", (h, f), 0.02
    yield "model.norm.weight", (h,), 0.1


def write_shard(path, entries):
    header, offset = {}, 0
    for name, shape, data in entries:
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, _, data in entries:
            f.write(data)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=SIZES, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", default=os.path.join(os.path.dirname(__file__), "../../Models/tiny-shakespeare/tokenizer.model"))
    args = ap.parse_args()
    cfg = SIZES[args.size]
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    specs = list(tensors(cfg, rng))
    shards, current, size = [], [], 0
    for name, shape, std in specs:
        n = int(np.prod(shape)) * 2
        if current and size + n > SHARD_BYTES:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape, std))
        size += n
    shards.append(current)

    weight_map = {}
    for k, shard in enumerate(shards):
        file = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        entries = []
        for name, shape, std in shard:
            data = rng.standard_normal(shape, dtype=np.float32) * std
            entries.append((name, shape, bf16_bytes(data)))
            weight_map[name] = file
        write_shard(os.path.join(args.out, file), entries)
        print(f"wrote {file} ({len(shard)} tensors)", flush=True)
    total = sum(int(np.prod(s)) * 2 for _, s, _ in specs)
    with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    config = dict(architectures=["GemmaForCausalLM"], model_type="gemma", vocab_size=VOCAB,
                  max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=10000.0,
                  hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh",
                  bos_token_id=2, eos_token_id=1, pad_token_id=0, torch_dtype="bfloat16", **cfg)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    shutil.copyfile(args.tokenizer, os.path.join(args.out, "tokenizer.model"))
    print(f"wrote {args.out}: {total / 1e9:.2f} GB of bf16 weights")


if __name__ == "__main__":
    main()
