#!/usr/bin/env bash
# Trains the Gemma-like SentencePiece test tokenizer committed as
# Tests/Fixtures/tokenizer/test-tokenizer.model (settings from shared/REFERENCE.md).
# The corpus is the licence texts every Debian system ships plus a few lines of digits,
# CJK, emoji, tabs and runs of spaces, so that merges exist for them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=Tests/Fixtures/tokenizer
mkdir -p "$out"
corpus=$(mktemp)
trap 'rm -f "$corpus"' EXIT
cat /usr/share/common-licenses/{Apache-2.0,GPL-3,LGPL-2.1,MPL-2.0,Artistic} > "$corpus"
for i in $(seq 1 200); do
  printf 'Line %d: 3.14159 and 2718 items cost $%d.%02d\n' "$i" "$((i * 7))" "$((i % 100))"
  printf '\t\tindented    with    spaces  and tabs\n'
  printf '日本語のテキスト、中文文本。한국어 🙂 🚀 café naïve\n'
done >> "$corpus"
spm_train --input="$corpus" --model_prefix="$out/test-tokenizer" --vocab_size=1000 \
  --model_type=bpe --byte_fallback=true --split_digits=true --normalization_rule_name=identity \
  --add_dummy_prefix=false --remove_extra_whitespaces=false --allow_whitespace_only_pieces=true \
  --pad_id=0 --eos_id=1 --bos_id=2 --unk_id=3 --user_defined_symbols='<start_of_turn>,<end_of_turn>' \
  --character_coverage=1.0 --input_sentence_size=0 --minloglevel=2
rm -f "$out/test-tokenizer.vocab"
echo "wrote $out/test-tokenizer.model"
