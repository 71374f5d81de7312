#!/usr/bin/env bash
# Quality of the bundled model's conversions: held-out perplexity (llama.cpp's definition,
# 256-token chunks) for f32, bf16, Q8_0 and Q4_0, beside gemma-quantize eval's KL divergence
# and top-1 agreement against the original. Prints a Markdown table.
#
#   scripts/quality_table.sh [HELDOUT_TEXT]
#
# HELDOUT_TEXT defaults to the three held-out plays made by scripts/shakespeare/make_corpus.py
# (/tmp/shakespeare/heldout.txt), falling back to Models/tiny-shakespeare/heldout-sample.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
model=Models/tiny-shakespeare
text=${1:-/tmp/shakespeare/heldout.txt}
[ -f "$text" ] || text=$model/heldout-sample.txt
swift build -c release --product gemma >&2
swift build -c release --product gemma-quantize >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ppl() { .build/release/gemma perplexity --model "$1" --file "$text" --ctx 256 --json \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.3f ± %.3f" % (r["perplexity"], r["standard_error"]))'; }
evalq() { .build/release/gemma-quantize eval --reference $model --model "$1" --json \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.5f | %.1f%% | %.5f" % (r["mean_kl"], 100*r["top1_agreement"], r["mean_cosine"]))'; }

echo "Held-out text: $text"
echo
echo "| weights | file size | perplexity | mean KL vs original | top-1 agreement | mean cosine |"
echo "|---|---|---|---|---|---|"
echo "| bf16 (original safetensors) | $(du -k $model/model.safetensors | cut -f1) KB | $(ppl $model) | 0 | 100% | 1 |"
for type in f32 bf16 q8_0 q4_0; do
  out="$work/$type.gguf"
  .build/release/gemma-quantize $model -o "$out" --type $type >/dev/null
  echo "| $type GGUF | $(du -k "$out" | cut -f1) KB | $(ppl "$out") | $(evalq "$out") |"
done
