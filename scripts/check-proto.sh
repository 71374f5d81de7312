#!/usr/bin/env bash
# Fails when the committed Swift code in Sources/GemmaWire/Generated is not what
# scripts/generate-proto.sh makes from Proto/gemma/v1/*.proto today: regenerates into a
# scratch folder and diffs.
#
# Needs protoc and protoc-gen-swift (found as generate-proto.sh finds it). With
# --if-available, a missing protoc-gen-swift is a skip (exit 0, saying so) instead of a build.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--if-available" ]; then
  if ! command -v protoc >/dev/null; then
    echo "check-proto: SKIPPED: protoc not found (apt-get install protobuf-compiler)"
    exit 0
  fi
  if [ -z "${PROTOC_GEN_SWIFT:-}" ] && ! command -v protoc-gen-swift >/dev/null; then
    echo "check-proto: SKIPPED: protoc-gen-swift not found (set PROTOC_GEN_SWIFT or put it on PATH)"
    exit 0
  fi
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

scripts/generate-proto.sh "$scratch/Generated" 2>"$scratch/generate.log" || {
  cat "$scratch/generate.log" >&2
  echo "check-proto: FAILED: could not regenerate the Swift code" >&2
  exit 1
}

if ! diff -ru Sources/GemmaWire/Generated "$scratch/Generated" >"$scratch/diff"; then
  head -n 60 "$scratch/diff" >&2
  echo "check-proto: FAILED: Sources/GemmaWire/Generated is stale or edited by hand;" \
       "run scripts/generate-proto.sh and commit the result" >&2
  exit 1
fi
echo "check-proto: OK: Sources/GemmaWire/Generated matches Proto/gemma/v1 ($(tail -n 1 "$scratch/generate.log" | sed 's/^generate-proto: //'))"
