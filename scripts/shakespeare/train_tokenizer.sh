#!/usr/bin/env bash
# Trains the tiny-shakespeare SentencePiece tokenizer (Gemma settings from shared/REFERENCE.md,
# vocabulary 4096) on the training plays written by make_corpus.py, and writes
# Models/tiny-shakespeare/tokenizer.model.
#
# Usage: scripts/shakespeare/train_tokenizer.sh [/tmp/shakespeare/train.txt]
#
# spm_train reads its input one line at a time, so the training text never contains a line
# break; "\n" is therefore added as a user-defined symbol (a literal newline inside the flag
# value), which makes every line break exactly one token instead of a byte-fallback <0x0A>.
set -euo pipefail
cd "$(dirname "$0")/../.."
corpus=${1:-/tmp/shakespeare/train.txt}
out=Models/tiny-shakespeare
mkdir -p "$out"
# The model records its --input and --model_prefix; both are fixed here (relative prefix, run
# from the repository root) so that the same corpus gives a byte-identical tokenizer.model.
spm_train --input="$corpus" --model_prefix="$out/tokenizer" --vocab_size=4096 \
  --model_type=bpe --byte_fallback=true --split_digits=true --normalization_rule_name=identity \
  --add_dummy_prefix=false --remove_extra_whitespaces=false --allow_whitespace_only_pieces=true \
  --pad_id=0 --eos_id=1 --bos_id=2 --unk_id=3 \
  --pad_piece='<pad>' --eos_piece='<eos>' --bos_piece='<bos>' --unk_piece='<unk>' \
  --user_defined_symbols="<start_of_turn>,<end_of_turn>,"$'\n' \
  --character_coverage=1.0 --input_sentence_size=0 --num_threads=2 --minloglevel=2
rm -f "$out/tokenizer.vocab"
echo "wrote $out/tokenizer.model"
