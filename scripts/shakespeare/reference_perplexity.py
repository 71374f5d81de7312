#!/usr/bin/env python3
"""Reference perplexity of a Gemma checkpoint on a text file, computed with transformers the way
llama.cpp's `llama-perplexity` does (tools/perplexity/perplexity.cpp, function perplexity(),
default mode without --ppl-stride), written as a JSON fixture.

llama.cpp's definition:
  * tokens = common_tokenize(ctx, text, add_special=true): the whole text in one go; for Gemma
    (add_bos_token = true) this PREPENDS ONE <bos> to the whole token stream;
  * n_chunk = len(tokens) // n_ctx, chunk i = tokens[i*n_ctx : (i+1)*n_ctx], each evaluated from
    an empty cache with its first token replaced by <bos> (`tokens[batch_start] = BOS`);
  * only the second half is scored: logits at positions first = n_ctx/2 ... n_ctx-2 predict the
    tokens at first+1 ... n_ctx-1, i.e. n_ctx - first - 1 tokens per chunk (127 for n_ctx 256);
  * nll = mean of -log softmax(logits)[next], perplexity = exp(nll);
  * standard error = ppl * sqrt((mean(nll^2) - mean(nll)^2) / (count - 1)).
The issue that asked for this script described tokenising the text without <bos>; llama.cpp
does prepend one, which shifts every chunk by one token. The fixture's main figures follow
llama.cpp; the variant without the leading <bos> is stored too ("variant_no_leading_bos").

The model is loaded with dtype=torch.float32 (never bf16 .float(); see shared/REFERENCE.md).

Usage:
  python scripts/shakespeare/reference_perplexity.py --model Models/tiny-shakespeare \
      --text Models/tiny-shakespeare/heldout-sample.txt \
      --out Models/tiny-shakespeare/perplexity-reference.json
"""
import argparse
import json
import math
import os

import torch


@torch.no_grad()
def llama_cpp_perplexity(model, tokens, bos_id, n_ctx=256, batch=8):
    """tokens: the full token stream as llama.cpp would have it (with its leading <bos>)."""
    n_chunk = len(tokens) // n_ctx
    if n_chunk < 1 or len(tokens) < 2 * n_ctx:
        raise ValueError(f"need at least {2 * n_ctx} tokens, have {len(tokens)}")
    first = n_ctx // 2
    chunks = torch.tensor([tokens[i * n_ctx:(i + 1) * n_ctx] for i in range(n_chunk)], dtype=torch.long)
    targets = chunks[:, first + 1:].clone()  # original tokens (chunk start is never a target)
    chunks[:, 0] = bos_id
    nll_sum, nll2_sum, count = 0.0, 0.0, 0
    per_chunk = []
    for b in range(0, n_chunk, batch):
        x = chunks[b:b + batch]
        logits = model(input_ids=x).logits[:, first:n_ctx - 1, :].to(torch.float64)
        logp = torch.log_softmax(logits, dim=-1)
        nll = -logp.gather(-1, targets[b:b + batch].unsqueeze(-1)).squeeze(-1)  # [B, n_ctx-first-1]
        for row in nll:
            per_chunk.append(row.mean().item())
            nll_sum += row.sum().item()
            nll2_sum += (row * row).sum().item()
            count += row.numel()
    mean = nll_sum / count
    ppl = math.exp(mean)
    var = nll2_sum / count - mean * mean
    stderr = ppl * math.sqrt(var / (count - 1)) if var > 0 else float("nan")
    return {"n_ctx": n_ctx, "chunks": n_chunk, "scored_tokens_per_chunk": n_ctx - first - 1,
            "scored_tokens": count, "mean_nll": mean, "perplexity": ppl, "perplexity_stderr": stderr,
            "chunk_mean_nll": per_chunk}


def main():
    import sentencepiece as spm
    import transformers
    from transformers import GemmaForCausalLM

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="folder with config.json, model.safetensors, tokenizer.model")
    ap.add_argument("--text", required=True)
    ap.add_argument("--out", default=None, help="JSON fixture to write")
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.model, "tokenizer.model"))
    model = GemmaForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    text = open(args.text, encoding="utf-8").read()
    ids = sp.encode(text)
    bos = sp.bos_id()

    res = llama_cpp_perplexity(model, [bos] + ids, bos, args.ctx)
    alt = llama_cpp_perplexity(model, ids, bos, args.ctx)
    print(f"{args.text}: {len(text)} chars, {len(ids)} tokens (+1 leading <bos>)")
    print(f"llama.cpp definition: ctx {res['n_ctx']}, {res['chunks']} chunks, "
          f"PPL = {res['perplexity']:.4f} +/- {res['perplexity_stderr']:.5f} (mean NLL {res['mean_nll']:.6f})")
    print(f"without the leading <bos>: {alt['chunks']} chunks, "
          f"PPL = {alt['perplexity']:.4f} +/- {alt['perplexity_stderr']:.5f}")
    if args.out:
        fixture = {
            "description": "llama.cpp-style perplexity (tools/perplexity/perplexity.cpp, perplexity()) "
                           "computed with transformers in float32 on the bf16 checkpoint",
            "model": os.path.basename(os.path.normpath(args.model)),
            "text_file": os.path.basename(args.text),
            "text_chars": len(text),
            "text_tokens": len(ids),
            "tokenization": "sentencepiece encode of the whole file, one <bos> prepended "
                            "(llama.cpp common_tokenize(add_special=true) with add_bos_token=true)",
            "chunking": "chunk i = tokens[i*ctx:(i+1)*ctx], first token replaced by <bos>; "
                        "logits at positions ctx/2 .. ctx-2 score the tokens at ctx/2+1 .. ctx-1",
            "ctx": res["n_ctx"],
            "chunks": res["chunks"],
            "scored_tokens_per_chunk": res["scored_tokens_per_chunk"],
            "scored_tokens": res["scored_tokens"],
            "mean_nll": res["mean_nll"],
            "perplexity": res["perplexity"],
            "perplexity_stderr": res["perplexity_stderr"],
            "chunk_mean_nll": res["chunk_mean_nll"],
            "variant_no_leading_bos": {k: alt[k] for k in
                                       ("chunks", "mean_nll", "perplexity", "perplexity_stderr", "chunk_mean_nll")},
            "bos_id": bos,
            "dtype": "float32 (loaded from bf16 safetensors with dtype=torch.float32)",
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
        }
        with open(args.out, "w") as f:
            json.dump(fixture, f, indent=1)
            f.write("\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
