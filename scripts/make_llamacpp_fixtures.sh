#!/usr/bin/env bash
# Converts the tiny Gemma fixture checkpoints (Tests/Fixtures/models/) to GGUF with llama.cpp's
# own converter, convert_hf_to_gguf.py, as shipped inside the llama-cpp-python sdist on PyPI,
# and writes the results to Tests/Fixtures/llamacpp/<model>-<type>.gguf.
#
# Only the sdist is downloaded (into a temp dir); nothing is built, and no llama.cpp code is
# kept or committed: the converter and its vendored gguf-py (put first on PYTHONPATH) run from
# the temp dir, which is removed at the end. Commit only the .gguf outputs.
#
# Needs a Python with torch, transformers, sentencepiece, safetensors, numpy and protobuf (the
# converter's own requirements); pass it as PYTHON. The committed files were made with
# torch 2.13 CPU, transformers 5.23, llama-cpp-python 0.3.36:
#
#     PYTHON=/tmp/refvenv/bin/python scripts/make_llamacpp_fixtures.sh
#
# LLAMA_CPP_PYTHON_VERSION overrides the sdist version (the outputs may then differ).
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
PYTHON="${PYTHON:-python3}"

root="$(cd "$(dirname "$0")/.." && pwd)"
models="$root/Tests/Fixtures/models"
out="$root/Tests/Fixtures/llamacpp"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --no-binary for this one package only: the sdist. (":all:" would also force pip to build the
# sdist's build backend dependencies, cmake included, from source just to read its metadata.)
"$PYTHON" -m pip download --quiet --no-deps --no-binary llama-cpp-python \
  "llama-cpp-python==$VERSION" -d "$tmp"

src="llama_cpp_python-$VERSION/vendor/llama.cpp"
tar -xzf "$tmp/llama_cpp_python-$VERSION.tar.gz" -C "$tmp" --wildcards \
  "$src/convert_hf_to_gguf.py" "$src/conversion/*" "$src/gguf-py/*"
llama="$tmp/$src"

mkdir -p "$out"
convert() { # model outtype
  echo "== $1 --outtype $2"
  PYTHONPATH="$llama/gguf-py" "$PYTHON" "$llama/convert_hf_to_gguf.py" \
    "$models/$1" --outtype "$2" --outfile "$tmp/$1-$2.gguf"
  mv "$tmp/$1-$2.gguf" "$out/$1-$2.gguf"
}

convert tiny-gqa f32
convert tiny-gqa f16
convert tiny-mqa q8_0
convert tiny-mqa f32

ls -l "$out"/*.gguf
