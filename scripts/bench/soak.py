#!/usr/bin/env python3
"""Soak test: concurrent streamed completions through a 2-stage local cluster for a long time,
with clients that go away mid-stream and requests cancelled before their first token, while
the resident memory (RSS) of every process is sampled. The RSS must level off.

    python3 scripts/bench/soak.py [--model Models/tiny-shakespeare] [--minutes 10] [--streams 16]
        [--bin .build/release] [--port 8391]

It starts `gemma cluster up --model M --stages 2`, warms up for 30 s, then runs --streams
client threads for --minutes. Each request is one of: a whole streamed completion (checked to
end with [DONE] and a finish reason), a completion whose client closes the connection after a
random number of chunks, or one whose client closes it before the first chunk. RSS of the
router, tokenizer and shard processes is printed at the start, every minute and at the end,
with the requests completed, disconnected and failed (a failure is any answer that is not a
well-formed stream). The cluster's KV use is read from /metrics at the end: it must be back to
0 once the clients are done. Exits 1 if a request failed, a process died, or KV was left held.
Uses only the Python standard library.
"""
import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPTS = ["ROMEO:", "To be, or not to be", "What news from Verona?", "Now is the winter of our discontent",
           "Friends, Romans, countrymen, lend me your ears;", "KING HENRY:\nOnce more unto the breach"]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def children(pid):
    """The processes `gemma cluster up` started: {name: pid}."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if int(fields[1]) != pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                args = cmdline.read().split(b"\0")
        except OSError:
            continue
        name = os.path.basename(args[0].decode())
        if name == "gemma-shard" and b"--layers" in args:
            name += " " + args[args.index(b"--layers") + 1].decode()
        found[name] = int(entry)
    return found


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"completed": 0, "disconnected": 0, "cancelled": 0, "failed": 0}
        self.failures = []

    def add(self, kind, problem=None):
        with self.lock:
            self.counts[kind] += 1
            if problem and len(self.failures) < 20:
                self.failures.append(problem)


def one_request(port, rng, stats):
    kind = rng.choices(["whole", "disconnect", "cancel"], weights=[6, 3, 1])[0]
    body = json.dumps({"prompt": rng.choice(PROMPTS), "max_tokens": rng.randint(8, 96), "temperature": 0.9,
                       "seed": rng.randint(0, 1 << 30), "stream": True,
                       "ignore_eos": rng.random() < 0.5})
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        connection.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        if kind == "cancel":
            time.sleep(rng.random() * 0.05)
            connection.close()
            stats.add("cancelled")
            return
        response = connection.getresponse()
        if response.status == 429:
            response.read()
            time.sleep(0.2)
            stats.add("completed")  # refused politely: admission, not a failure
            return
        if response.status != 200:
            stats.add("failed", f"HTTP {response.status}: {response.read()[:200]!r}")
            return
        stop_after = rng.randint(1, 40) if kind == "disconnect" else None
        chunks, finished, done = 0, False, False
        for raw in response:
            line = raw.decode().strip()
            if line == "data: [DONE]":
                done = True
                break
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                stats.add("failed", chunk["error"]["message"])
                return
            chunks += 1
            finished = finished or any(c.get("finish_reason") for c in chunk["choices"])
            if stop_after is not None and chunks >= stop_after:
                connection.close()
                stats.add("disconnected")
                return
        if done and finished:
            stats.add("completed")
        elif stop_after is not None:
            stats.add("completed")  # ended before the client meant to leave
        else:
            stats.add("failed", f"stream ended without [DONE] and a finish reason after {chunks} chunks")
    except (OSError, http.client.HTTPException) as error:
        stats.add("failed", f"{type(error).__name__}: {error}")
    finally:
        connection.close()


def client(port, seed, until, stats):
    rng = random.Random(seed)
    while time.monotonic() < until:
        one_request(port, rng, stats)


def metric(port, name):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    return [line for line in text.splitlines() if line.startswith(name)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.path.join(ROOT, "Models/tiny-shakespeare"))
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build/release"))
    parser.add_argument("--port", type=int, default=8391)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    log = tempfile.NamedTemporaryFile(prefix="soak-cluster-", suffix=".log", delete=False)
    cluster = subprocess.Popen([os.path.join(args.bin, "gemma"), "cluster", "up", "--model", args.model, "--stages", "2",
                                "--http", f"127.0.0.1:{args.port}", "--log-level", "warning"],
                               stdout=subprocess.PIPE, stderr=log, text=True)
    for line in cluster.stdout:
        if "OpenAI API:" in line:
            break
    else:
        sys.exit(f"soak: the cluster did not start; its log: {log.name}")
    processes = children(cluster.pid)
    print(f"soak: cluster up (log {log.name}); processes: {processes}", flush=True)

    stats = Stats()
    warm_until = time.monotonic() + 30
    warm = [threading.Thread(target=client, args=(args.port, 1000 + i, warm_until, Stats())) for i in range(args.streams)]
    for thread in warm:
        thread.start()
    for thread in warm:
        thread.join()

    def sample(label):
        figures = {name: rss_kib(pid) for name, pid in processes.items()}
        text = ", ".join(f"{name} {kib / 1024:.1f} MB" if kib else f"{name} gone" for name, kib in figures.items())
        with stats.lock:
            counts = dict(stats.counts)
        print(f"soak: {label}: RSS {text}; requests {counts}", flush=True)
        return figures

    start = time.monotonic()
    until = start + args.minutes * 60
    first = sample("start (after 30 s warm-up)")
    threads = [threading.Thread(target=client, args=(args.port, args.seed * 1000 + i, until, stats)) for i in range(args.streams)]
    for thread in threads:
        thread.start()
    minute = 1
    while any(thread.is_alive() for thread in threads):
        time.sleep(1)
        if time.monotonic() - start >= minute * 60 and minute <= args.minutes:
            sample(f"{minute} min")
            minute += 1
    for thread in threads:
        thread.join()
    last = sample("end")
    time.sleep(2)
    kv = metric(args.port, "gemma:kv_cache_usage_perc")
    running = metric(args.port, "gemma:num_requests_running")
    print("soak: after the clients: " + "; ".join(kv + running), flush=True)

    problems = []
    if stats.counts["failed"]:
        problems.append(f"{stats.counts['failed']} requests failed: {stats.failures}")
    if any(value is None for value in last.values()):
        problems.append("a process died")
    if any(float(line.rsplit(" ", 1)[1]) != 0 for line in kv + running):
        problems.append("KV cache or running requests left after the clients finished")
    for name, kib in first.items():
        if kib and last.get(name):
            print(f"soak: {name}: {kib / 1024:.1f} -> {last[name] / 1024:.1f} MB ({(last[name] - kib) / 1024:+.1f} MB)")
    cluster.send_signal(signal.SIGINT)
    try:
        cluster.wait(timeout=60)
    except subprocess.TimeoutExpired:
        cluster.kill()
    if problems:
        print("soak: FAILED: " + "; ".join(problems), flush=True)
        sys.exit(1)
    print("soak: passed", flush=True)


if __name__ == "__main__":
    main()
