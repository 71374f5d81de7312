#!/usr/bin/env bash
# Our engine and llama.cpp side by side, interleaved in one run, on the same files.
#
#   scripts/bench/side_by_side.sh engine [MODEL.gguf ...]   # default: bench-models/gemma-2b-q8_0.gguf and -q4_0.gguf
#   scripts/bench/side_by_side.sh quantize [BF16.gguf]      # default: bench-models/gemma-2b-bf16.gguf,
#                                                           # written from $CHECKPOINT when missing
#
# Environment:
#   LLAMACPP_VENV   virtual environment with llama-cpp-python 0.3.36 (default bench-models/llamacpp-venv);
#                   created and built (CMAKE_ARGS=-DGGML_NATIVE=ON, about 10 minutes) when it lacks llama_cpp
#   CHECKPOINT      the checkpoint the bf16 GGUF is written from (default bench-models/gemma-2b-random)
#   THREADS (2), ROUNDS (engine 3, quantize 2), GEN_TOKENS (16), REPETITIONS (3), PROMPT_TOKENS (64)
#   GEMMA_BIN, GEMMA_QUANTIZE_BIN   other builds of ours to time (default: this tree's release build)
#   BASELINE_QUANTIZE                an older gemma-quantize to time in the same rounds (before/after)
#
# llama-cpp-python is a dependency of this benchmark only, never of the product. The machine is
# shared and noisy: compare the ratios this prints, not figures from different runs.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
HELPER="$ROOT/scripts/bench/side_by_side.py"
VENV="${LLAMACPP_VENV:-$ROOT/bench-models/llamacpp-venv}"
LLAMACPP_VERSION=0.3.36
THREADS="${THREADS:-2}"

mode="${1:-engine}"
[ $# -gt 0 ] && shift

ensure_venv() {
    if "$VENV/bin/python" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMACPP_VERSION')" 2>/dev/null; then
        return
    fi
    echo "building llama-cpp-python $LLAMACPP_VERSION into $VENV (GGML_NATIVE=ON, about 10 minutes)..." >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    CMAKE_ARGS="-DGGML_NATIVE=ON" "$VENV/bin/pip" install --no-cache-dir --no-binary llama-cpp-python \
        "llama-cpp-python==$LLAMACPP_VERSION" numpy
    "$VENV/bin/python" -c "import llama_cpp" || { echo "llama_cpp does not import from $VENV" >&2; exit 1; }
}

build() {
    echo "building release binaries..." >&2
    swift build -c release --product gemma >&2
    swift build -c release --product gemma-quantize >&2
}

ensure_venv
build
BIN="$(swift build -c release --show-bin-path)"

case "$mode" in
engine)
    if [ $# -eq 0 ]; then set -- bench-models/gemma-2b-q8_0.gguf bench-models/gemma-2b-q4_0.gguf; fi
    for model in "$@"; do
        [ -f "$model" ] || { echo "$model: no such file (write it with gemma-quantize)" >&2; exit 1; }
        "$VENV/bin/python" "$HELPER" engine --model "$model" --gemma "${GEMMA_BIN:-$BIN/gemma}" --threads "$THREADS" \
            --rounds "${ROUNDS:-3}" --gen-tokens "${GEN_TOKENS:-16}" --repetitions "${REPETITIONS:-3}" \
            --prompt-tokens "${PROMPT_TOKENS:-64}"
        echo
    done
    ;;
quantize)
    input="${1:-bench-models/gemma-2b-bf16.gguf}"
    if [ ! -f "$input" ]; then
        checkpoint="${CHECKPOINT:-bench-models/gemma-2b-random}"
        [ -d "$checkpoint" ] || { echo "$checkpoint: no checkpoint (scripts/bench/make_random_checkpoint.py writes one)" >&2; exit 1; }
        echo "writing $input from $checkpoint..." >&2
        mkdir -p "$(dirname "$input")"
        "$BIN/gemma-quantize" "$checkpoint" -o "$input" --type bf16 >&2
    fi
    "$VENV/bin/python" "$HELPER" quantize --input "$input" --gemma-quantize "${GEMMA_QUANTIZE_BIN:-$BIN/gemma-quantize}" \
        --output-dir "$(dirname "$input")" --threads "$THREADS" --rounds "${ROUNDS:-2}" \
        ${BASELINE_QUANTIZE:+--baseline "$BASELINE_QUANTIZE"}
    ;;
*)
    echo "usage: $0 engine [MODEL.gguf ...] | quantize [BF16.gguf]" >&2
    exit 2
    ;;
esac
