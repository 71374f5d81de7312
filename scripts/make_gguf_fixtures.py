#!/usr/bin/env python3
"""Records the `gguf` Python package's answers for the GemmaQuant tests.

Writes, into Tests/Fixtures/gguf/:

- quant_vectors.json: awkward f32 rows (lengths 32, 64, 256: zeros, all-equal values, a
  positive and a negative value tied in magnitude, huge and tiny magnitudes, values that land
  exactly on .5 after scaling, random normal ones) with their Q8_0 and Q4_0 bytes from
  `gguf.quants.quantize` and the f32 values `gguf.quants.dequantize` gives back; f32 -> f16
  conversions of awkward values (numpy `astype(float16)`, round to nearest even) and f32 -> bf16
  conversions (gguf's BF16 quantizer, the same as ggml's `ggml_compute_fp32_to_bf16`); and
  checksums over large generated inputs (2^20 pseudo-random values, a sweep of f32 bit patterns,
  every f16 bit pattern) so the Swift tests can compare millions of results without storing them.
  Byte strings are lowercase hex of the little-endian bytes.
- basic.gguf / basic.json: a GGUF v3 file written by `gguf.GGUFWriter` with every metadata value
  type (arrays of strings, ints, floats, bools and nested arrays included) and tensors of types
  F32, F16, BF16, Q8_0 and Q4_0 with known contents, and a JSON saying exactly what was written:
  the metadata in file order (key, type, value; floats as hex bit patterns) and, for each tensor,
  its name, ggml-order dimensions, type, source f32 values and the bytes stored.
- aligned64.gguf / aligned64.json: the same kind of file with `general.alignment = 64`,
  1-D, 3-D and (1, 64)-shaped tensors.

The checksum of a byte string is sum((w[i] + 1) * splitmix64(i)) mod 2^64 over its little-endian
64-bit words w (zero-padded; see `checksum`), and the generated inputs come from
`generated_values`; the Swift tests re-implement both.

Run from anywhere, with a Python that has `gguf` (0.19.0) and numpy installed:

    /tmp/refvenv/bin/python scripts/make_gguf_fixtures.py

The output is deterministic; commit it together with any change to this script.
"""

import json
import pathlib

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT
from gguf.quants import dequantize, quantize

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "Fixtures" / "gguf"

M64 = (1 << 64) - 1


def hexbytes(a) -> str:
    return np.ascontiguousarray(a).tobytes().hex()


def f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def f32_from_bits(bits) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


# ---------------------------------------------------------------------------------------------
# Deterministic generated data and checksums (mirrored in Tests/GemmaQuantTests).

def splitmix64(i: np.ndarray) -> np.ndarray:
    """splitmix64 of each index (uint64 arithmetic wraps)."""
    with np.errstate(over="ignore"):
        z = (i.astype(np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def checksum(data: np.ndarray) -> str:
    """The bytes, zero-padded to a multiple of 8 and read as little-endian u64 words w[i]:
    sum((w[i] + 1) * splitmix64(i)) mod 2^64, as 16 hex digits."""
    b = np.ascontiguousarray(data).view(np.uint8).ravel()
    b = np.concatenate([b, np.zeros((-b.size) % 8, dtype=np.uint8)])
    words = b.view("<u8").astype(np.uint64)
    w = splitmix64(np.arange(words.size, dtype=np.uint64))
    with np.errstate(over="ignore"):
        total = int(np.sum((words + np.uint64(1)) * w, dtype=np.uint64))
    return f"{total & M64:016x}"


def generated_values(n: int) -> np.ndarray:
    """n f32 values, exact in f32: a 24-bit signed mantissa scaled by powers of two that vary
    per block of 32 (2^-20 .. 2^19) and per element (2^-4 .. 2^3); one in 16 is zero."""
    i = np.arange(n, dtype=np.uint64)
    z = splitmix64(i)
    mant = (z & np.uint64(0xFFFFFF)).astype(np.int64) - 0x800000
    elem_exp = ((z >> np.uint64(40)) & np.uint64(7)).astype(np.int64) - 4
    blk = splitmix64((i // np.uint64(32)) + np.uint64(1 << 32))
    blk_exp = (blk % np.uint64(40)).astype(np.int64) - 20
    v = np.ldexp(mant.astype(np.float64), (elem_exp + blk_exp - 23).astype(np.int32))
    v = np.where((z >> np.uint64(60)) == 0, 0.0, v)
    out = v.astype(np.float32)
    assert np.all(out.astype(np.float64) == v), "generated values must be exact in f32"
    return out


# ---------------------------------------------------------------------------------------------
# (a) quantization vectors

def quant_rows() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(20240221)
    rows: list[tuple[str, np.ndarray]] = []
    rows.append(("zeros_32", np.zeros(32, np.float32)))
    # gguf-py and ggml differ here for Q4_0: ggml's signed max of an all-zero block stays +0.0
    # (d = -0.0), gguf-py's argmax takes the first element, -0.0 (d = +0.0). The test knows.
    rows.append(("negative_zeros_32", f32([-0.0] * 32)))
    rows.append(("all_equal_positive_32", f32([0.75] * 32)))
    rows.append(("all_equal_negative_64", f32([-3.5] * 64)))
    # The largest magnitude appears as +m and -m: Q4_0 takes the first one as its signed max.
    tie = rng.normal(size=32).astype(np.float32) * 0.1
    tie[5], tie[20] = 2.0, -2.0
    rows.append(("tie_positive_first_32", tie))
    tie2 = tie.copy()
    tie2[5], tie2[20] = -2.0, 2.0
    rows.append(("tie_negative_first_32", tie2))
    # Values that land exactly on k + 0.5 after scaling (Q8_0: amax 127 -> d = 1, id = 1;
    # Q4_0: max -8 -> d = 1, id = 1, then x + 8.5 hits integers and halves).
    halves = f32([127.0, -127.0] + [k + 0.5 for k in range(-15, 15)])
    rows.append(("exact_halves_q8_32", halves))
    halves4 = f32([-8.0] + [k * 0.5 for k in range(-16, 15)])
    rows.append(("exact_halves_q4_32", halves4))
    # Scaled so x * id is near .5 with rounding in the multiply.
    # x * id = -22.5 * fl(1/3) is just below -7.5 but rounds to -7.5: a fused multiply-add of
    # x * id + 8.5 (what GCC emits for ggml's C with FMA enabled) gives 0 instead of 1.
    fma = f32([0.1] * 32)
    fma[0], fma[1] = -24.0, -22.5
    rows.append(("fma_sensitive_q4_32", fma))
    rows.append(("near_halves_64", f32(np.linspace(-6.5, 6.5, 64) * 1.000001)))
    rows.append(("huge_32", f32(rng.normal(size=32) * 1e30)))
    rows.append(("max_finite_32", f32([3.4028235e38, -3.4028235e38] + list(rng.normal(size=30) * 1e37))))
    rows.append(("scale_overflows_f16_32", f32(rng.normal(size=32) * 1e7)))
    rows.append(("tiny_32", f32(rng.normal(size=32) * 1e-30)))
    rows.append(("scale_subnormal_f16_32", f32(rng.normal(size=32) * 1e-5)))
    rows.append(("mixed_magnitudes_64", f32(np.concatenate([rng.normal(size=32) * 1e-3, rng.normal(size=32) * 1e3]))))
    rows.append(("one_nonzero_32", f32([0.0] * 17 + [-0.3] + [0.0] * 14)))
    rows.append(("random_normal_256", rng.normal(size=256).astype(np.float32)))
    rows.append(("random_normal_small_256", (rng.normal(size=256) * 0.02).astype(np.float32)))
    rows.append(("random_uniform_64", rng.uniform(-1, 1, size=64).astype(np.float32)))
    return rows


AWKWARD_F32_BITS = [
    0x00000000, 0x80000000, 0x3F800000, 0xBF800000, 0x3F800001, 0x3F801000, 0x3F802000, 0x3F803000,
    0x3F801FFF, 0x3F800FFF, 0x3F801001,
    0x477FE000,  # 65504, largest f16
    0x477FEFFF,  # just below the halfway point -> 65504
    0x477FF000,  # 65520, halfway to 65536 -> inf
    0x47800000,  # 65536 -> inf
    0x7F7FFFFF, 0xFF7FFFFF,  # largest f32 -> +-inf
    0x7F800000, 0xFF800000,  # infinities
    0x7FC00000, 0xFFC00000, 0x7FC00001, 0x7FE00000, 0x7FFFFFFF,  # quiet NaNs
    0x38800000,  # 2^-14, smallest normal f16
    0x387FFFFF, 0x387FF000, 0x387FE000,  # just below it
    0x33800000,  # 2^-24, smallest subnormal f16
    0x33000000,  # 2^-25: tie between 0 and 2^-24 -> 0
    0x33000001,  # just above -> 2^-24
    0x33C00000,  # 1.5 * 2^-24: tie -> 2 * 2^-24
    0x34200000,  # 2.5 * 2^-24: tie -> 2 * 2^-24
    0x34600000,  # 3.5 * 2^-24: tie -> 4 * 2^-24
    0x32FFFFFF, 0x00000001, 0x807FFFFF, 0x00800000,  # tiny, f32 subnormals
    0x3EAAAAAB, 0xBEAAAAAB, 0x40490FDB, 0x3DCCCCCD, 0x42F6E979, 0xC2F6E979,
    0x3F7FFFFF, 0x3F7FF000, 0x3F7FEFFF,  # rounding that carries into the exponent
    0x3F808000, 0x3F818000, 0x3F80FFFF, 0x3F817FFF,  # bf16 ties and near-ties
    0x7F7F8000, 0x7F7F7FFF,  # bf16: rounds up to inf / stays finite
    0x7F800001, 0xFF800001, 0x7FA00000, 0x7F80FFFF, 0x7FBFFFFF,  # signalling NaNs (bf16 only)
]


def is_signalling_nan(bits: int) -> bool:
    return (bits & 0x7F800000) == 0x7F800000 and (bits & 0x007FFFFF) != 0 and (bits & 0x00400000) == 0


def make_quant_vectors() -> dict:
    rows = []
    for name, row in quant_rows():
        row = f32(row)
        with np.errstate(invalid="ignore", over="ignore"):
            q8 = quantize(row.reshape(1, -1), QT.Q8_0)
            q4 = quantize(row.reshape(1, -1), QT.Q4_0)
            d8 = dequantize(q8, QT.Q8_0).astype(np.float32)
            d4 = dequantize(q4, QT.Q4_0).astype(np.float32)
        rows.append({
            "name": name,
            "count": int(row.size),
            "f32": hexbytes(row),
            "q8_0": hexbytes(q8),
            "q4_0": hexbytes(q4),
            "q8_0_dequantized": hexbytes(d8),
            "q4_0_dequantized": hexbytes(d4),
        })

    # f16: numpy rounds to nearest even. Signalling NaNs are left out: numpy keeps them
    # signalling while x86 F16C (and this library) make them quiet.
    rng = np.random.default_rng(7)
    random_bits = [int(b) for b in rng.integers(0, 1 << 32, size=200, dtype=np.uint64)]
    f16_inputs = [b for b in AWKWARD_F32_BITS + random_bits if not is_signalling_nan(b)]
    src = f32_from_bits(f16_inputs)
    with np.errstate(over="ignore", invalid="ignore"):
        f16 = src.astype(np.float16).view(np.uint16)
    f16_cases = [{"f32": f"{a:08x}", "f16": f"{int(h):04x}"} for a, h in zip(f16_inputs, f16)]

    bf16_inputs = AWKWARD_F32_BITS + random_bits
    bsrc = f32_from_bits(bf16_inputs)
    bf16 = quantize(bsrc, QT.BF16).view(np.uint16)
    bf16_cases = [{"f32": f"{a:08x}", "bf16": f"{int(h):04x}"} for a, h in zip(bf16_inputs, bf16)]

    # Checksums over large inputs.
    n = 1 << 20
    g = generated_values(n)
    with np.errstate(over="ignore", invalid="ignore"):  # some block scales overflow f16
        q8 = quantize(g.reshape(-1, 256), QT.Q8_0)
        q4 = quantize(g.reshape(-1, 256), QT.Q4_0)
        q8_dequantized = dequantize(q8, QT.Q8_0).astype(np.float32)
        q4_dequantized = dequantize(q4, QT.Q4_0).astype(np.float32)
    sweep_stride = 4093
    sweep_bits = np.arange(0, 1 << 32, sweep_stride, dtype=np.uint64).astype(np.uint32)
    sweep = sweep_bits.view(np.float32)
    sweep_bits_i = sweep_bits.astype(np.int64)
    signalling = ((sweep_bits_i & 0x7F800000) == 0x7F800000) & ((sweep_bits_i & 0x7FFFFF) != 0) & ((sweep_bits_i & 0x400000) == 0)
    with np.errstate(over="ignore", invalid="ignore"):
        sweep_f16 = sweep[~signalling].astype(np.float16)
    all_f16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    all_f16_as_f32 = all_f16.view(np.float16).astype(np.float32)
    all_f16_is_nan = np.isnan(all_f16.view(np.float16))
    with np.errstate(over="ignore"):
        g_f16 = g.astype(np.float16)
    checksums = {
        "generated_count": n,
        "generated_f32": checksum(g),
        "generated_q8_0": checksum(q8),
        "generated_q4_0": checksum(q4),
        "generated_q8_0_dequantized": checksum(q8_dequantized),
        "generated_q4_0_dequantized": checksum(q4_dequantized),
        "generated_f16": checksum(g_f16),
        "generated_bf16": checksum(quantize(g, QT.BF16)),
        "f32_sweep_stride": sweep_stride,
        "f32_sweep_count": int(sweep.size),
        "f32_sweep_f16_without_signalling_nans": checksum(sweep_f16),
        "f32_sweep_f16_count": int(sweep_f16.size),
        "f32_sweep_bf16": checksum(quantize(sweep, QT.BF16)),
        # Every f16 bit pattern widened to f32, NaNs left out (numpy keeps a signalling NaN's
        # payload; F16C would set the quiet bit).
        "all_f16_to_f32_without_nans": checksum(all_f16_as_f32[~all_f16_is_nan]),
        "all_f16_non_nan_count": int((~all_f16_is_nan).sum()),
    }
    return {
        "note": "Written by scripts/make_gguf_fixtures.py with gguf " + gguf_version() + " and numpy " + np.__version__,
        "rows": rows,
        "f16": f16_cases,
        "bf16": bf16_cases,
        "checksums": checksums,
    }


def gguf_version() -> str:
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:  # pragma: no cover
        return "unknown"


# ---------------------------------------------------------------------------------------------
# (b) GGUF files

TYPE_NAMES = {
    VT.UINT8: "u8", VT.INT8: "i8", VT.UINT16: "u16", VT.INT16: "i16", VT.UINT32: "u32",
    VT.INT32: "i32", VT.FLOAT32: "f32", VT.BOOL: "bool", VT.STRING: "string", VT.ARRAY: "array",
    VT.UINT64: "u64", VT.INT64: "i64", VT.FLOAT64: "f64",
}


def json_scalar(value, vtype: VT):
    if vtype == VT.FLOAT32:
        return f"{int(np.array([value], dtype=np.float32).view(np.uint32)[0]):08x}"
    if vtype == VT.FLOAT64:
        return f"{int(np.array([value], dtype=np.float64).view(np.uint64)[0]):016x}"
    if vtype == VT.BOOL:
        return bool(value)
    if vtype == VT.STRING:
        return value
    return int(value)


def json_value(value, vtype: VT, sub_type: VT | None = None) -> dict:
    """{"type": T, "value": V}; arrays: {"type": "array", "element_type": E, "value": [...]},
    where the items of an array of arrays are themselves such objects. f32 / f64 values are
    hex bit patterns."""
    if vtype != VT.ARRAY:
        return {"type": TYPE_NAMES[vtype], "value": json_scalar(value, vtype)}
    # gguf.GGUFWriter infers an unspecified element type from the first item.
    etype = sub_type if sub_type is not None else VT.get_type(value[0])
    if etype == VT.ARRAY:
        items = [json_value(v, VT.ARRAY) for v in value]
    else:
        items = [json_scalar(v, etype) for v in value]
    return {"type": "array", "element_type": TYPE_NAMES[etype], "value": items}


class Recorder:
    """Wraps gguf.GGUFWriter and records what goes into the file."""

    def __init__(self, path: pathlib.Path, arch: str):
        self.path = path
        self.writer = gguf.GGUFWriter(str(path), arch)
        # GGUFWriter's constructor adds general.architecture itself.
        self.metadata = [{"key": "general.architecture", **json_value(arch, VT.STRING)}]
        self.tensors = []

    def kv(self, key: str, value, vtype: VT, sub_type: VT | None = None):
        self.writer.add_key_value(key, value, vtype, sub_type=sub_type)
        self.metadata.append({"key": key, **json_value(value, vtype, sub_type)})

    def alignment(self, n: int):
        self.writer.add_custom_alignment(n)
        self.metadata.append({"key": "general.alignment", **json_value(n, VT.UINT32)})

    def tensor(self, name: str, values: np.ndarray, qtype: QT):
        """values: f32 array in PyTorch order; stored as qtype."""
        values = f32(values)
        if qtype == QT.F32:
            data = values
            self.writer.add_tensor(name, data)
        elif qtype == QT.F16:
            with np.errstate(over="ignore"):
                data = values.astype(np.float16)
            self.writer.add_tensor(name, data)
        else:
            data = quantize(values, qtype)
            self.writer.add_tensor(name, data, raw_shape=None, raw_dtype=qtype)
        self.tensors.append({
            "name": name,
            "dims": [int(d) for d in reversed(values.shape)],  # ggml order
            "type": qtype.name,
            "type_id": int(qtype),
            "values": hexbytes(values),
            "data": hexbytes(data),
        })

    def finish(self) -> dict:
        w = self.writer
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return {
            "file": self.path.name,
            "version": 3,
            "alignment": w.data_alignment,
            "file_size": self.path.stat().st_size,
            "metadata": self.metadata,
            "tensors": self.tensors,
        }


def make_basic() -> dict:
    rng = np.random.default_rng(42)
    r = Recorder(OUT / "basic.gguf", "testarch")
    r.kv("test.u8", 255, VT.UINT8)
    r.kv("test.i8", -128, VT.INT8)
    r.kv("test.u16", 65535, VT.UINT16)
    r.kv("test.i16", -32768, VT.INT16)
    r.kv("test.u32", 4294967295, VT.UINT32)
    r.kv("test.i32", -2147483648, VT.INT32)
    r.kv("test.u64", 18446744073709551615, VT.UINT64)
    r.kv("test.i64", -9223372036854775808, VT.INT64)
    r.kv("test.i32_small", 7, VT.INT32)
    r.kv("test.u64_small", 256000, VT.UINT64)
    r.kv("test.f32", 1e-6, VT.FLOAT32)
    r.kv("test.f32_negative_zero", -0.0, VT.FLOAT32)
    r.kv("test.f64", 3.141592653589793, VT.FLOAT64)
    r.kv("test.f64_tiny", 5e-324, VT.FLOAT64)
    r.kv("test.bool_true", True, VT.BOOL)
    r.kv("test.bool_false", False, VT.BOOL)
    r.kv("test.string", "héllo, wörld ✓ 日本語 🙂", VT.STRING)
    r.kv("test.string_empty", "", VT.STRING)
    r.kv("test.array.strings", ["<pad>", "<eos>", "", "▁the", "日本", "<0x0A>"], VT.ARRAY)
    r.kv("test.array.i32", [0, -1, 2147483647, -2147483648, 106, 107], VT.ARRAY)
    r.kv("test.array.u8", [0, 1, 254, 255], VT.ARRAY, sub_type=VT.UINT8)
    r.kv("test.array.i64", [-(1 << 63), (1 << 63) - 1, 0], VT.ARRAY, sub_type=VT.INT64)
    r.kv("test.array.u64", [(1 << 64) - 1, 1], VT.ARRAY, sub_type=VT.UINT64)
    r.kv("test.array.u16", [65535, 0, 7], VT.ARRAY, sub_type=VT.UINT16)
    r.kv("test.array.i16", [-32768, 32767], VT.ARRAY, sub_type=VT.INT16)
    r.kv("test.array.u32", [4294967295, 3], VT.ARRAY, sub_type=VT.UINT32)
    r.kv("test.array.i8", [-128, 127, 0], VT.ARRAY, sub_type=VT.INT8)
    r.kv("test.array.f32", [0.0, -1.5, 1e-6, -1000.25, float("inf")], VT.ARRAY)
    r.kv("test.array.f64", [0.1, -2.5], VT.ARRAY, sub_type=VT.FLOAT64)
    r.kv("test.array.bool", [True, False, True], VT.ARRAY)
    r.kv("test.array.nested_i32", [[1, 2, 3], [4], [-5, 6]], VT.ARRAY)
    r.kv("test.array.nested_strings", [["a", "bc"], ["", "日本"]], VT.ARRAY)
    r.kv("test.array.nested_twice", [[[1, 2], [3]], [[4]]], VT.ARRAY)
    # Gemma-style keys, as a model file would have them.
    r.kv("testarch.context_length", 8192, VT.UINT32)
    r.kv("testarch.attention.layer_norm_rms_epsilon", 1e-6, VT.FLOAT32)
    r.kv("tokenizer.ggml.scores", [0.0, -1.0, -2.5, -1e9], VT.ARRAY)
    r.kv("tokenizer.ggml.token_type", [3, 3, 1, 6], VT.ARRAY)

    r.tensor("f32.weight", rng.normal(size=(3, 32)), QT.F32)
    r.tensor("f32.odd", f32([1.0, -2.0, 3.5, float("inf"), -0.0]), QT.F32)  # 20 bytes: padded to 32
    r.tensor("f16.weight", rng.normal(size=(2, 40)) * 100, QT.F16)
    r.tensor("bf16.weight", rng.normal(size=(2, 24)) * 1e3, QT.BF16)
    r.tensor("q8_0.weight", rng.normal(size=(4, 64)), QT.Q8_0)
    r.tensor("q4_0.weight", rng.normal(size=(3, 32)), QT.Q4_0)
    r.tensor("q8_0.norm_like", rng.normal(size=(32,)) * 0.01 + 1, QT.Q8_0)
    return r.finish()


def make_aligned64() -> dict:
    rng = np.random.default_rng(64)
    r = Recorder(OUT / "aligned64.gguf", "other")
    r.alignment(64)
    r.kv("other.name", "alignment test", VT.STRING)
    r.kv("other.block_count", 2, VT.UINT32)
    r.tensor("a.vector", rng.normal(size=(5,)), QT.F32)
    r.tensor("b.cube", rng.normal(size=(2, 3, 32)), QT.Q8_0)
    r.tensor("c.cube", rng.normal(size=(2, 1, 64)), QT.Q4_0)
    r.tensor("d.matrix", rng.normal(size=(3, 8)), QT.F16)
    # gguf.GGUFWriter keeps the trailing 1 (n_dims = 2); llama.cpp's gguf.cpp would write n_dims = 1.
    r.tensor("e.row", rng.normal(size=(1, 64)), QT.BF16)
    return r.finish()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    vectors = make_quant_vectors()
    (OUT / "quant_vectors.json").write_text(json.dumps(vectors, indent=1, ensure_ascii=False) + "\n")
    for describe in (make_basic, make_aligned64):
        info = describe()
        info["note"] = "Written by scripts/make_gguf_fixtures.py with gguf " + gguf_version()
        name = pathlib.Path(info["file"]).stem
        (OUT / f"{name}.json").write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
