#!/usr/bin/env bash
# Several hosts for real: puts the tokenizer, two shard workers, the router and a client each in
# a network namespace of its own, joined by veth pairs to a bridge (10.231.0.0/24, nothing
# outside this machine), runs a completion across them over TCP, then kills the last stage's
# worker with SIGKILL in the middle of a streamed completion and restarts it a second later:
# the stream must finish with the undisturbed run's text (same seed). Then, with a second
# replica of the last stage and a 120 s stage deadline, it kills the replica a stream runs on:
# the stream must resume within 3 s (the closed connection is noticed, not the deadline), and
# a request started after the kill must not wait on the dead replica. Cleans up after itself.
#
#   scripts/netns_cluster_test.sh [BIN_DIR]     (default .build/debug; needs root and `ip netns`)
#
# Exits 0 when it passes, 1 when it fails, 77 (skipped) where namespaces cannot be made.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(cd "${1:-$root/.build/debug}" && pwd)"
model="$root/Tests/Fixtures/models/tiny-mqa"
tag="g$$"
net=10.231.0
names=(hub tok s0 s1 s1b router client)

skip() { echo "netns test: skipped: $*" >&2; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root to create network namespaces"
command -v ip >/dev/null || skip "the ip command (iproute2) is missing"
command -v curl >/dev/null || skip "curl is missing"
for exe in gemma-tokenizer gemma-shard gemma-router; do
  [ -x "$bin/$exe" ] || { echo "netns test: $bin/$exe is not built" >&2; exit 1; }
done
ip netns add "$tag-probe" 2>/dev/null || skip "cannot create network namespaces here (ip netns add failed)"
ip netns del "$tag-probe"

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in "${names[@]}"; do ip netns del "$tag-$n" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# The hub holds the bridge; every other namespace is a host with one address on it.
for n in "${names[@]}"; do ip netns add "$tag-$n"; ip -n "$tag-$n" link set lo up; done
ip -n "$tag-hub" link add br0 type bridge
ip -n "$tag-hub" link set br0 up
i=1
declare -A address
for n in tok s0 s1 s1b router client; do
  ip link add "$tag-$n" type veth peer name "$tag-$n-h"
  ip link set "$tag-$n" netns "$tag-$n"
  ip link set "$tag-$n-h" netns "$tag-hub"
  ip -n "$tag-hub" link set "$tag-$n-h" master br0 up
  ip -n "$tag-$n" addr add "$net.$i/24" dev "$tag-$n"
  ip -n "$tag-$n" link set "$tag-$n" up
  address[$n]="$net.$i"
  i=$((i + 1))
done

run_in() { # namespace log command...
  local ns="$1" log="$2"; shift 2
  ip netns exec "$tag-$ns" "$@" >"$work/$log.log" 2>&1 &
  pids+=($!)
  last_pid=$!
}

run_in tok tokenizer "$bin/gemma-tokenizer" --model "$model" --listen "tcp://${address[tok]}:5550"
run_in s0 shard0 "$bin/gemma-shard" --model "$model" --layers 0-1 --listen "tcp://${address[s0]}:5551"
start_last_stage() { run_in s1 shard1 "$bin/gemma-shard" --model "$model" --layers 1-3 --listen "tcp://${address[s1]}:5552"; shard1=$last_pid; }
start_last_stage
cat >"$work/cluster.json" <<EOF
{"model_name": "tiny", "tokenizer": ["tcp://${address[tok]}:5550"],
 "stages": [{"layers": "0-1", "replicas": ["tcp://${address[s0]}:5551"]},
            {"layers": "1-3", "replicas": ["tcp://${address[s1]}:5552"]}],
 "http": "${address[router]}:8080",
 "scheduling": {"recovery_seconds": 30, "stage_timeout_seconds": 2}}
EOF
run_in router router "$bin/gemma-router" --config "$work/cluster.json"
router_pid=$last_pid

api="http://${address[router]}:8080"
client() { ip netns exec "$tag-client" curl -sS --max-time 60 "$@"; }
fail() { echo "netns test: FAILED: $*" >&2; for f in "$work"/*.log; do echo "--- $f" >&2; tail -20 "$f" >&2; done; exit 1; }

for _ in $(seq 1 120); do
  [ "$(client -o /dev/null -w '%{http_code}' "$api/health" 2>/dev/null || true)" = 200 ] && break
  sleep 0.5
done
[ "$(client -o /dev/null -w '%{http_code}' "$api/health")" = 200 ] || fail "the router at $api never became healthy"
echo "netns test: cluster healthy across 5 namespaces (router at $api, seen from the client's namespace)" >&2

request='{"prompt": "To be, or not to be", "max_tokens": 150, "temperature": 0.9, "top_k": 40, "seed": 7, "ignore_eos": true, "stream": true}'
text_of() { python3 -c '
import json, sys
text = ""
for line in open(sys.argv[1]):
    if line.startswith("data: {"):
        chunk = json.loads(line[6:])
        if "error" in chunk: sys.exit("error in stream: " + chunk["error"]["message"])
        text += "".join(c["text"] for c in chunk["choices"])
print(text)' "$1"; }

client -N "$api/v1/completions" -H 'Content-Type: application/json' -d "$request" >"$work/undisturbed.sse"
undisturbed="$(text_of "$work/undisturbed.sse")" || fail "the undisturbed completion failed"
[ -n "$undisturbed" ] || fail "the undisturbed completion is empty"

# The same request again; kill -9 the last stage at its first streamed token, restart it 1 s later.
client -N "$api/v1/completions" -H 'Content-Type: application/json' -d "$request" >"$work/disturbed.sse" &
curl_pid=$!
for _ in $(seq 1 2000); do grep -q '"text"' "$work/disturbed.sse" 2>/dev/null && break; sleep 0.005; done
kill -9 "$shard1"; wait "$shard1" 2>/dev/null || true
echo "netns test: killed the 1-3 worker (pid $shard1) mid-stream; restarting it in 1 s" >&2
sleep 1
start_last_stage
wait "$curl_pid" || fail "the disturbed stream failed"
disturbed="$(text_of "$work/disturbed.sse")" || fail "the disturbed stream ended with an error"
[ "$disturbed" = "$undisturbed" ] || fail "the disturbed text differs from the undisturbed one:
undisturbed: $undisturbed
disturbed:   $disturbed"
echo "netns test: the stream survived the killed and restarted worker with the undisturbed text (${#disturbed} characters)" >&2

# Second part: a replica of the last stage, and a stage deadline far longer than the test.
kill "$router_pid"; wait "$router_pid" 2>/dev/null || true
run_in s1b shard1b "$bin/gemma-shard" --model "$model" --layers 1-3 --listen "tcp://${address[s1b]}:5553"
cat >"$work/cluster2.json" <<EOF
{"model_name": "tiny", "tokenizer": ["tcp://${address[tok]}:5550"],
 "stages": [{"layers": "0-1", "replicas": ["tcp://${address[s0]}:5551"]},
            {"layers": "1-3", "replicas": ["tcp://${address[s1]}:5552", "tcp://${address[s1b]}:5553"]}],
 "http": "${address[router]}:8080",
 "scheduling": {"recovery_seconds": 30, "stage_timeout_seconds": 120}}
EOF
run_in router router2 "$bin/gemma-router" --config "$work/cluster2.json"
for _ in $(seq 1 120); do
  [ "$(client -o /dev/null -w '%{http_code}' "$api/health" 2>/dev/null || true)" = 200 ] && break
  sleep 0.5
done
[ "$(client -o /dev/null -w '%{http_code}' "$api/health")" = 200 ] || fail "the second router never became healthy"
# The client streams, kills the primary (the replica lane 0 runs on) at its 5th chunk and
# times the gap to the next chunk; then times a new request's first chunk.
cat >"$work/failover.py" <<'PY'
import http.client, json, os, sys, time, urllib.parse
api, victim, undisturbed = sys.argv[1], int(sys.argv[2]), sys.argv[3]
url = urllib.parse.urlparse(api)
body = json.dumps({"prompt": "To be, or not to be", "max_tokens": 150, "temperature": 0.9, "top_k": 40,
                   "seed": 7, "ignore_eos": True, "stream": True})

def stream(on_chunk):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=150)
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200, response.status
    text, chunks = "", 0
    for raw in response:
        line = raw.decode()
        if not line.startswith("data: {"):
            continue
        chunk = json.loads(line[6:])
        if "error" in chunk:
            sys.exit("error in stream: " + chunk["error"]["message"])
        text += "".join(c["text"] for c in chunk["choices"])
        chunks += 1
        on_chunk(chunks)
    return text

killed = {}
def kill_at_fifth(n):
    if n == 5:
        os.kill(victim, 9)
        killed["at"] = time.monotonic()
    elif n == 6:
        killed["resumed"] = time.monotonic() - killed["at"]
text = stream(kill_at_fifth)
print(f"the stream resumed {killed['resumed']:.2f} s after the kill")
assert killed["resumed"] < 3, f"the stream resumed only {killed['resumed']:.2f} s after the kill (stage deadline 120 s)"
assert text == undisturbed, f"the text differs:\n{undisturbed}\n{text}"

start = time.monotonic()
first = {}
text = stream(lambda n: first.setdefault("at", time.monotonic() - start))
print(f"a request after the kill had its first chunk in {first['at']:.2f} s")
assert first["at"] < 3, f"a request after the kill waited {first['at']:.2f} s for its first chunk"
assert text == undisturbed, "the request after the kill gave other text"
PY
ip netns exec "$tag-client" python3 "$work/failover.py" "$api" "$shard1" "$undisturbed" >"$work/failover.log" 2>&1 \
  || fail "the failover part failed: $(cat "$work/failover.log")"
echo "netns test: $(tr '\n' ' ' <"$work/failover.log")" >&2
echo "netns test: passed: the stream survived a killed and restarted worker with the undisturbed text (${#disturbed} characters), and a killed replica was left behind within 3 s" >&2
