#!/usr/bin/env python3
"""End-to-end benchmark of a local cluster: time to first token and tokens/s for 1, 4 and 16
concurrent streamed completions, with 1 stage and with 2 stages, on one machine.

    python3 scripts/bench/cluster_bench.py --model Models/tiny-shakespeare [--model bench-models/gemma-2b-q8_0.gguf]
        [--streams 1,4,16] [--max-tokens 64] [--prompt-tokens 32] [--rounds 3] [--bin .build/release] [--json]

For each model it starts `gemma cluster up --model M --stages S` (S = 1 and 2, kept running side
by side on different ports), then for every concurrency level alternates the two clusters for
`--rounds` rounds (the machine is noisy: only figures from one interleaved run compare), sending
N streamed /v1/completions at once (ignore_eos, so every stream makes exactly --max-tokens
tokens). Reported (medians over rounds): time to first token (median over the streams), decode
tokens/s per stream (after the first token), aggregate tokens/s (all tokens / wall time), and
for 1 stream the 2-stage cost per token over 1 stage (the per-hop overhead per step).
Uses only the Python standard library.
"""
import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Cluster:
    """A `gemma cluster up` process serving one model with some stages."""

    def __init__(self, binary, model, stages, port):
        self.port = port
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [binary, "cluster", "up", "--model", model, "--stages", str(stages), "--http", f"127.0.0.1:{port}",
             "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        for line in self.process.stdout:
            if "OpenAI API:" in line:
                break
        else:
            self.log.seek(0)
            sys.exit(f"cluster_bench: the cluster ({stages} stages) did not start:\n{self.log.read().decode()}")

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def stream_completion(port, prompt, max_tokens, seed, result):
    """One streamed completion; records the arrival time of every token's chunk."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8, "seed": seed,
                       "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}})
    connection.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        result["error"] = f"HTTP {response.status}: {response.read()[:300]!r}"
        return
    times, tokens = [], 0
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: {"):
            continue
        chunk = json.loads(line[6:])
        if "error" in chunk:
            result["error"] = chunk["error"]["message"]
            return
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        # One chunk per token (its text may be empty: a random model's tokens often are).
        if any(c.get("finish_reason") is None for c in chunk.get("choices", [])):
            times.append(time.perf_counter())
    connection.close()
    result.update(start=start, first=times[0] if times else None, end=time.perf_counter(), tokens=tokens)


def run_level(port, streams, prompt, max_tokens):
    results = [dict() for _ in range(streams)]
    threads = [threading.Thread(target=stream_completion, args=(port, prompt, max_tokens, 100 + i, results[i]))
               for i in range(streams)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    for r in results:
        if "error" in r:
            sys.exit(f"cluster_bench: a completion failed: {r['error']}")
    ttft = statistics.median(r["first"] - r["start"] for r in results)
    per_stream = statistics.median((r["tokens"] - 1) / (r["end"] - r["first"]) for r in results)
    aggregate = sum(r["tokens"] for r in results) / wall
    return {"ttft_s": ttft, "per_stream_tps": per_stream, "aggregate_tps": aggregate}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--streams", default="1,4,16")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=32, help="about this many tokens of prompt")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build/release"))
    parser.add_argument("--port", type=int, default=18400)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    binary = os.path.join(args.bin, "gemma")
    levels = [int(n) for n in args.streams.split(",")]
    # Shakespeare-ish words: about one token each for the bundled model's tokenizer.
    prompt = " ".join(["the king doth wake to night and bid the world good morrow"] * 8).split()
    prompt = " ".join(prompt[: args.prompt_tokens])
    report = []
    for m, model in enumerate(args.model):
        clusters = {s: Cluster(binary, model, s, args.port + 10 * m + s) for s in (1, 2)}
        try:
            for level in levels:
                rounds = {1: [], 2: []}
                run_level(clusters[1].port, level, prompt, 4)  # warm-up
                run_level(clusters[2].port, level, prompt, 4)
                for _ in range(args.rounds):
                    for s in (1, 2):
                        rounds[s].append(run_level(clusters[s].port, level, prompt, args.max_tokens))
                        r = rounds[s][-1]
                        print(f"cluster_bench: {level} streams, {s} stages: ttft {r['ttft_s'] * 1000:.0f} ms, "
                              f"{r['per_stream_tps']:.2f} tokens/s per stream, {r['aggregate_tps']:.2f} aggregate",
                              file=sys.stderr, flush=True)
                for s in (1, 2):
                    row = {key: statistics.median(r[key] for r in rounds[s]) for key in rounds[s][0]}
                    row.update(model=os.path.basename(model.rstrip("/")), stages=s, streams=level)
                    report.append(row)
        finally:
            for cluster in clusters.values():
                cluster.stop()
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"| model | streams | stages | time to first token | tokens/s per stream | aggregate tokens/s |")
    print(f"|---|---|---|---|---|---|")
    for row in report:
        print(f"| {row['model']} | {row['streams']} | {row['stages']} | {row['ttft_s'] * 1000:.0f} ms "
              f"| {row['per_stream_tps']:.1f} | {row['aggregate_tps']:.1f} |")
    for model in dict.fromkeys(r["model"] for r in report):
        one = [r for r in report if r["model"] == model and r["streams"] == min(levels)]
        by_stages = {r["stages"]: r for r in one}
        if 1 in by_stages and 2 in by_stages:
            t1, t2 = 1 / by_stages[1]["per_stream_tps"], 1 / by_stages[2]["per_stream_tps"]
            print(f"{model}: 2 stages cost {100 * (t2 / t1 - 1):+.1f}% per token over 1 stage at "
                  f"{min(levels)} stream ({(t2 - t1) * 1000:+.2f} ms per step for the extra hop)")


if __name__ == "__main__":
    main()
