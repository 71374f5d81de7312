#!/usr/bin/env bash
# The README's main command: sets up the machine, builds in release mode and streams a chat
# answer from the bundled model (a tiny Gemma trained on Shakespeare's plays).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product gemma >&2
prompt=${1:-"What news from Verona?"}
echo "user> $prompt" >&2
exec .build/release/gemma generate --model Models/tiny-shakespeare --chat --prompt "$prompt" \
  --max-tokens 200 --temperature 0.8 --top-p 0.95 --seed 1
