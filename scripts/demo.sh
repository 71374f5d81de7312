#!/usr/bin/env bash
# The README's main command: sets up the machine, builds in release mode, starts a local
# cluster on the bundled model (a tiny Gemma trained on Shakespeare's plays) with
# `gemma cluster up` -- a tokenizer, two pipeline stages and the router, as processes -- and
# streams a chat answer from its OpenAI-compatible API. On a terminal the cluster keeps
# serving until Ctrl-C; otherwise (or with DEMO_KEEP=0) it stops after the answer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release >&2
prompt=${1:-"What news from Verona?"}
port=${PORT:-8080}

out=$(mktemp) && err=$(mktemp)
.build/release/gemma cluster up --http "127.0.0.1:$port" >"$out" 2>"$err" &
cluster=$!
cleanup() { kill -INT "$cluster" 2>/dev/null && wait "$cluster" 2>/dev/null; rm -f "$out" "$err"; }
trap cleanup EXIT
until grep -q "OpenAI API:" "$out"; do
  if ! kill -0 "$cluster" 2>/dev/null; then
    echo "demo: the cluster did not start:" >&2; cat "$err" >&2; exit 1
  fi
  sleep 0.5
done
cat "$out" >&2

echo "user> $prompt" >&2
body=$(python3 -c 'import json, sys; print(json.dumps({"messages": [{"role": "user", "content": sys.argv[1]}],
  "stream": True, "max_tokens": 200, "temperature": 0.8, "top_p": 0.95, "seed": 1}))' "$prompt")
# Print each streamed delta as it arrives.
curl -sSN "http://127.0.0.1:$port/v1/chat/completions" -H "Content-Type: application/json" -d "$body" |
  python3 -u -c '
import json, sys
for line in sys.stdin:
    if line.startswith("data: ") and not line.startswith("data: [DONE]"):
        chunk = json.loads(line[6:])
        if "error" in chunk: sys.exit("error: " + chunk["error"]["message"])
        for choice in chunk["choices"]:
            print(choice["delta"].get("content", ""), end="", flush=True)
print()'

if [ -t 0 ] && [ "${DEMO_KEEP:-1}" != 0 ]; then
  echo "The cluster is still serving at http://127.0.0.1:$port/v1 (logs: $err); Ctrl-C stops it." >&2
  trap - EXIT
  trap 'kill -INT "$cluster" 2>/dev/null' INT
  wait "$cluster" || true
  rm -f "$out" "$err"
fi
