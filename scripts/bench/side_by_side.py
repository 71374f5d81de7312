#!/usr/bin/env python3
"""Our engine and llama.cpp side by side, interleaved in one run, on the same GGUF file.

Run through scripts/bench/side_by_side.sh, which builds the release binaries and provides a
virtual environment with llama-cpp-python (the `llama_cpp` ctypes bindings). Subcommands:

  engine      alternates `gemma bench --json` and llama.cpp's `llama_decode` timed the same way
              (prompt of N tokens; decode 1, 4, 8 sequences in one batch; medians after a
              warm-up) and prints ours/theirs ratios
  quantize    alternates `gemma-quantize IN -o OUT --type T` and `llama_model_quantize` from the
              same bf16 GGUF and prints ours/theirs time ratios
  llama-engine, llama-quantize
              one llama.cpp measurement as JSON (run in a child process so that each run
              loads the model afresh, as ours does)

The machine these run on is shared and noisy: only ratios taken in one interleaved run mean
anything, so every figure here comes with its counterpart from the same round.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


# ---------------------------------------------------------------------------------------------
# llama.cpp through llama_cpp's ctypes bindings (runs inside the virtual environment).

def quiet_llama(llama_cpp):
    """Silences llama.cpp's log (the callback must outlive every call)."""
    callback = llama_cpp.llama_log_callback(lambda level, text, user: None)
    llama_cpp.llama_log_set(callback, None)
    return callback


def random_tokens(count, seed, vocabulary):
    """BOS then pseudo-random ids in [10, vocabulary), the generator `gemma bench` uses."""
    state = seed
    tokens = [2]
    mask = (1 << 64) - 1
    for _ in range(1, count):
        state = (state * 6364136223846793005 + 1442695040888963407) & mask
        tokens.append(10 + (state >> 33) % (vocabulary - 10))
    return tokens


class LlamaEngine:
    """A llama.cpp model and context with room for `max_sequences` sequences."""

    def __init__(self, path, threads, max_sequences, context):
        import llama_cpp
        import numpy as np
        self.llama_cpp, self.np = llama_cpp, np
        self._log = quiet_llama(llama_cpp)
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(path.encode(), model_params)
        if not self.model:
            raise SystemExit(f"llama.cpp could not load {path}")
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = context
        params.n_batch = max(512, context)
        params.n_ubatch = 512
        params.n_seq_max = max_sequences
        params.n_threads = threads
        params.n_threads_batch = threads
        params.kv_unified = True
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.ctx:
            raise SystemExit("llama.cpp could not create a context")
        self.vocabulary = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(max(context, 512), 0, max_sequences)

    def clear(self):
        self.llama_cpp.llama_memory_clear(self.memory, True)

    def decode(self, entries):
        """entries: (token, position, sequence, wants_logits). Returns the logits rows' argmax."""
        b = self.batch
        for i, (token, position, sequence, logits) in enumerate(entries):
            b.token[i] = token
            b.pos[i] = position
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = sequence
            b.logits[i] = 1 if logits else 0
        b.n_tokens = len(entries)
        status = self.llama_cpp.llama_decode(self.ctx, b)
        if status != 0:
            raise SystemExit(f"llama_decode returned {status}")
        self.llama_cpp.llama_synchronize(self.ctx)
        best = []
        for i, entry in enumerate(entries):
            if entry[3]:
                row = self.llama_cpp.llama_get_logits_ith(self.ctx, i)
                best.append(int(self.np.ctypeslib.as_array(row, shape=(self.vocabulary,)).argmax()))
        return best


def llama_engine(args):
    batches = [int(b) for b in args.batch.split(",")]
    steps = args.gen_tokens
    context = max(args.prompt_tokens, max(batches) * (8 + steps)) + 64
    context = (context + 255) // 256 * 256
    engine = LlamaEngine(args.model, args.threads, max(batches), context)

    # Prompt: one prefill of prompt_tokens, logits of the last.
    tokens = random_tokens(args.prompt_tokens, 1, engine.vocabulary)
    entries = [(t, p, 0, p == len(tokens) - 1) for p, t in enumerate(tokens)]
    times = []
    for repetition in range(args.repetitions + 1):
        engine.clear()
        start = time.perf_counter()
        engine.decode(entries)
        if repetition > 0:
            times.append(time.perf_counter() - start)
    prompt = args.prompt_tokens / statistics.median(times)

    decode = []
    for batch in batches:
        step_medians = []
        for repetition in range(args.repetitions + 1):
            engine.clear()
            next_tokens = []
            for s in range(batch):  # 8-token prompts, as `gemma bench` primes its caches
                prompt_tokens = random_tokens(8, 100 + s, engine.vocabulary)
                engine.decode([(t, p, s, p == 7) for p, t in enumerate(prompt_tokens)])
                next_tokens.append(prompt_tokens[-1])
            steps_times = []
            for step in range(steps):
                start = time.perf_counter()
                next_tokens = engine.decode([(next_tokens[s], 8 + step, s, True) for s in range(batch)])
                steps_times.append(time.perf_counter() - start)
            if repetition > 0:
                step_medians.append(statistics.median(steps_times))
        step = statistics.median(step_medians)
        decode.append({"batch": batch, "per_stream": 1 / step, "aggregate": batch / step})
    print(json.dumps({"prompt_tokens_per_second": prompt, "decode": decode}))


def llama_quantize(args):
    import llama_cpp
    _log = quiet_llama(llama_cpp)
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = args.threads
    params.ftype = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0}[args.type]
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    status = llama_cpp.llama_model_quantize(args.input.encode(), args.output.encode(), ctypes_pointer(params))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    if status != 0:
        raise SystemExit(f"llama_model_quantize returned {status}")
    print(json.dumps({"wall": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime,
                      "bytes": os.path.getsize(args.output)}))


def ctypes_pointer(value):
    import ctypes
    return ctypes.pointer(value)


# ---------------------------------------------------------------------------------------------
# Orchestration (alternating runs, ratio tables).

def run_json(command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_timed(command):
    """Runs a command; returns wall, user and system seconds of the child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}")
    return {"wall": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime}


def log(message):
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def engine(args):
    ours_command = [args.gemma, "bench", "--model", args.model, "--json", "--threads", str(args.threads),
                    "--prompt-tokens", str(args.prompt_tokens), "--gen-tokens", str(args.gen_tokens),
                    "--batch", args.batch, "--repetitions", str(args.repetitions)]
    theirs_command = [sys.executable, os.path.abspath(__file__), "llama-engine", "--model", args.model,
                      "--threads", str(args.threads), "--prompt-tokens", str(args.prompt_tokens),
                      "--gen-tokens", str(args.gen_tokens), "--batch", args.batch,
                      "--repetitions", str(args.repetitions)]
    ours, theirs = [], []
    for round_index in range(args.rounds):
        order = [("ours", ours_command, ours), ("llama.cpp", theirs_command, theirs)]
        if round_index % 2 == 1:
            order.reverse()
        for name, command, results in order:
            log(f"round {round_index + 1}/{args.rounds}: {name}")
            results.append(run_json(command))
            log(f"  {json.dumps(results[-1])}")
    print_engine_table(args, ours, theirs)


def retable(args):
    """The ratio table again from the log (stderr) of an `engine` run."""
    ours, theirs, current = [], [], None
    with open(args.log) as f:
        for line in f:
            if "round" in line and line.rstrip().endswith(": ours"):
                current = ours
            elif "round" in line and line.rstrip().endswith(": llama.cpp"):
                current = theirs
            elif line.strip().startswith("[") and "{" in line and current is not None:
                current.append(json.loads(line[line.index("{"):]))
                current = None
    # A log of several models holds their rounds one model after the other.
    first = args.part * args.rounds
    ours, theirs = ours[first:first + args.rounds], theirs[first:first + args.rounds]
    n = min(len(ours), len(theirs))
    args.rounds = n
    print_engine_table(args, ours[:n], theirs[:n])


def print_engine_table(args, ours, theirs):
    def figures(result):
        row = {"prompt": result["prompt_tokens_per_second"]}
        for d in result["decode"]:
            row[f"decode x{d['batch']}"] = d["aggregate"]
        return row

    ours_rows = [figures(r) for r in ours]
    theirs_rows = [figures(r) for r in theirs]
    keys = list(ours_rows[0].keys())
    # Bandwidth is a best-of figure: the best round's probe.
    bandwidth = max(r["bandwidth_bytes_per_second"] for r in ours)
    bytes_per_token = ours[0]["bytes_per_token"]
    table = []
    for key in keys:
        o = [r[key] for r in ours_rows]
        t = [r[key] for r in theirs_rows]
        per_round = [a / b for a, b in zip(o, t)]
        table.append((key, statistics.median(o), statistics.median(t), statistics.median(per_round),
                      min(per_round), max(per_round), max(o) / max(t)))
    best_x1 = max(r["decode x1"] for r in ours_rows), max(r["decode x1"] for r in theirs_rows)

    print(f"model: {args.model} ({bytes_per_token / 1e9:.3f} GB of weights read per decode step), "
          f"threads {args.threads}, {args.rounds} interleaved rounds, {time.strftime('%Y-%m-%d %H:%M')}")
    print()
    print("| figure (tokens/s, aggregate; medians of rounds) | ours | llama.cpp | ours / llama.cpp (median of rounds) "
          "| range over rounds | best round / best round |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, o, t, ratio, low, high, best in table:
        label = f"prompt ({args.prompt_tokens} tokens)" if key == "prompt" else key
        print(f"| {label} | {o:.2f} | {t:.2f} | **{ratio:.2f}** | {low:.2f}-{high:.2f} | {best:.2f} |")
    print(f"| decode x1 (best round) as a share of the best read bandwidth probe ({bandwidth / 1e9:.1f} GB/s) | "
          f"{best_x1[0] * bytes_per_token / bandwidth * 100:.0f}% | {best_x1[1] * bytes_per_token / bandwidth * 100:.0f}% | | | |")
    # Within a round: our decode and our probe come from one `gemma bench` process, a few
    # seconds apart, so this share is the least exposed to the machine's swings; llama.cpp's
    # round is set against our probe of the same round.
    shares = [(o["decode x1"] * bytes_per_token / r["bandwidth_bytes_per_second"],
               t["decode x1"] * bytes_per_token / r["bandwidth_bytes_per_second"])
              for o, t, r in zip(ours_rows, theirs_rows, ours)]
    print(f"| decode x1 as a share of the same round's probe (median of rounds; range) | "
          f"{statistics.median(s[0] for s in shares) * 100:.0f}% ({min(s[0] for s in shares) * 100:.0f}-"
          f"{max(s[0] for s in shares) * 100:.0f}%) | {statistics.median(s[1] for s in shares) * 100:.0f}% | | | |")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"ours": ours, "theirs": theirs}, f)


def quantize(args):
    ours, theirs = {t: [] for t in args.types}, {t: [] for t in args.types}
    before = {t: [] for t in args.types}
    out_dir = args.output_dir
    os.makedirs(out_dir, exist_ok=True)
    for round_index in range(args.rounds):
        for qtype in args.types:
            ours_out = os.path.join(out_dir, f"side-by-side-ours-{qtype}.gguf")
            theirs_out = os.path.join(out_dir, f"side-by-side-llamacpp-{qtype}.gguf")
            ours_command = [args.gemma_quantize, args.input, "-o", ours_out, "--type", qtype,
                            "--threads", str(args.threads)]
            theirs_command = [sys.executable, os.path.abspath(__file__), "llama-quantize", "--input", args.input,
                              "--output", theirs_out, "--type", qtype, "--threads", str(args.threads)]
            order = ["ours", "theirs"] if round_index % 2 == 0 else ["theirs", "ours"]
            if args.baseline:
                order.insert(1, "before")
            for name in order:
                log(f"round {round_index + 1}/{args.rounds}, {qtype}: {name}")
                if name in ("ours", "before"):
                    command = list(ours_command)
                    if name == "before":
                        command[0] = args.baseline
                    figure = run_timed(command)
                    figure["bytes"] = os.path.getsize(ours_out)
                    (ours if name == "ours" else before)[qtype].append(figure)
                    os.remove(ours_out)
                else:
                    figure = run_json(theirs_command)
                    theirs[qtype].append(figure)
                    os.remove(theirs_out)
                log(f"  {json.dumps(figure)}")

    print(f"input: {args.input} ({os.path.getsize(args.input) / 1e9:.2f} GB), threads {args.threads}, "
          f"{args.rounds} interleaved rounds, {time.strftime('%Y-%m-%d %H:%M')}")
    print()
    print("| output | ours: wall (user + sys) | llama.cpp: wall (user + sys) | output size ours / llama.cpp | "
          "time ours / llama.cpp (median of rounds) | range |")
    print("|---|---:|---:|---:|---:|---:|")
    med = lambda rows, key: statistics.median(r[key] for r in rows)
    for label, runs in [("", ours)] + ([(" (before: " + args.baseline + ")", before)] if args.baseline else []):
        for qtype in args.types:
            o, t = runs[qtype], theirs[qtype]
            ratios = [a["wall"] / b["wall"] for a, b in zip(o, t)]
            print(f"| {qtype.upper()}{label} | {med(o, 'wall'):.1f} s ({med(o, 'user'):.1f} + {med(o, 'sys'):.1f}) | "
                  f"{med(t, 'wall'):.1f} s ({med(t, 'user'):.1f} + {med(t, 'sys'):.1f}) | "
                  f"{o[0]['bytes'] / 1e6:.0f} / {t[0]['bytes'] / 1e6:.0f} MB | **{statistics.median(ratios):.2f}** | "
                  f"{min(ratios):.2f}-{max(ratios):.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def engine_options(p):
        p.add_argument("--model", required=True, help="GGUF file (written by gemma-quantize)")
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--prompt-tokens", type=int, default=64)
        p.add_argument("--gen-tokens", type=int, default=16, help="decode steps per repetition")
        p.add_argument("--batch", default="1,4,8", help="comma-separated decode batch sizes")
        p.add_argument("--repetitions", type=int, default=3, help="repetitions after the warm-up")

    p = sub.add_parser("engine")
    engine_options(p)
    p.add_argument("--gemma", required=True, help="the release `gemma` binary")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json-out", help="also write every raw figure here")
    p.set_defaults(run=engine)

    p = sub.add_parser("retable", help="print an engine run's table again from its log")
    p.add_argument("--log", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--rounds", type=int, default=3, help="rounds per model in the log")
    p.add_argument("--part", type=int, default=0, help="which model of the log (0 = the first)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--json-out")
    p.set_defaults(run=retable)

    p = sub.add_parser("llama-engine")
    engine_options(p)
    p.set_defaults(run=llama_engine)

    p = sub.add_parser("quantize")
    p.add_argument("--input", required=True, help="bf16 GGUF written by gemma-quantize")
    p.add_argument("--gemma-quantize", required=True, help="the release `gemma-quantize` binary")
    p.add_argument("--output-dir", required=True, help="where the (deleted) outputs go")
    p.add_argument("--types", nargs="+", default=["q8_0", "q4_0"], choices=["q8_0", "q4_0"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--baseline", help="another gemma-quantize build, timed in the same rounds (before/after)")
    p.set_defaults(run=quantize)

    p = sub.add_parser("llama-quantize")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--type", required=True, choices=["q8_0", "q4_0"])
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(run=llama_quantize)

    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
