#!/usr/bin/env python3
"""Records the `gguf` Python package's Q8_0 / Q4_0 bytes for the tiny fixture checkpoints.

For tiny-mqa and tiny-gqa (Tests/Fixtures/models/), every 2-D tensor is read as float32 (the
bf16 weights of tiny-mqa widened exactly: bf16 bits << 16), given its llama.cpp GGUF name and
quantized with `gguf.quants.quantize(array, Q8_0)` and `Q4_0`; every 1-D RMSNorm weight w is
stored the way llama.cpp's converter stores Gemma norms, as the f32 bytes of (1 + w) computed
in float32. For each (tensor, type) the JSON records the byte count and the 64-bit FNV-1a hash
of the bytes (offset basis 0xcbf29ce484222325, prime 0x100000001b3, every byte in order) as
16 lowercase hex digits:

    {"gguf_version": "0.19.0",
     "models": {"tiny-mqa": {"token_embd.weight": {"Q8_0": {"bytes": N, "fnv1a64": "..."},
                                                   "Q4_0": {...}},
                             "blk.0.attn_norm.weight": {"F32": {...}}, ...}, ...}}

Output: Tests/Fixtures/gguf/quant-reference.json. Needs only numpy and `gguf` (0.19.0); the
safetensors files are parsed directly. Run from anywhere:

    /tmp/refvenv/bin/python scripts/make_quant_reference.py

The output is deterministic; commit it together with any change to this script.
"""

import json
import pathlib
import re
import struct

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "Tests" / "Fixtures" / "models"
OUT = ROOT / "Tests" / "Fixtures" / "gguf" / "quant-reference.json"

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = (1 << 64) - 1


def fnv1a64(data: bytes) -> str:
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK64
    return f"{h:016x}"


def read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    """All tensors of one safetensors file as float32 (BF16 widened exactly, bits << 16)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        buf = raw[base + start:base + end]
        if info["dtype"] == "F32":
            a = np.frombuffer(buf, dtype="<f4").copy()
        elif info["dtype"] == "BF16":
            a = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path.name}: {name}: unsupported dtype {info['dtype']}")
        out[name] = a.reshape(info["shape"])
    return out


def load_model(model_dir: pathlib.Path) -> dict[str, np.ndarray]:
    tensors = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        tensors.update(read_safetensors(f))
    return tensors


LAYER_MAP = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf: str) -> str:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)\.weight", hf)
    if m and m.group(2) in LAYER_MAP:
        return f"blk.{m.group(1)}.{LAYER_MAP[m.group(2)]}.weight"
    raise ValueError(f"no GGUF name for {hf}")


def sort_key(name: str):
    if name == "token_embd.weight":
        return (0, 0, name)
    m = re.fullmatch(r"blk\.(\d+)\.(.+)", name)
    if m:
        return (1, int(m.group(1)), m.group(2))
    return (2, 0, name)


def record(data: bytes) -> dict:
    return {"bytes": len(data), "fnv1a64": fnv1a64(data)}


def model_reference(model_dir: pathlib.Path) -> dict:
    named = {gguf_name(k): v for k, v in load_model(model_dir).items()}
    result = {}
    for name in sorted(named, key=sort_key):
        a = named[name]
        if a.ndim == 2:
            result[name] = {
                qt.name: record(gguf.quants.quantize(a, qt).tobytes())
                for qt in (QT.Q8_0, QT.Q4_0)
            }
        elif a.ndim == 1:
            assert name.endswith("norm.weight"), name
            result[name] = {"F32": record((np.float32(1) + a).astype("<f4").tobytes())}
        else:
            raise ValueError(f"{name}: unexpected shape {a.shape}")
    return result


def main():
    from importlib.metadata import version
    ref = {
        "gguf_version": version("gguf"),
        "models": {m: model_reference(MODELS / m) for m in ("tiny-mqa", "tiny-gqa")},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(ref, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
