#!/usr/bin/env python3
"""The KV cache type (``--cache-type fp16|bf16|q8_0``): what exactness costs in speed, and what it saves in memory.

    .venv/bin/python bench/cache_type.py            # SmolLM2 and gemma-3-270m, 2,048-token prompt, 3 reps
    .venv/bin/python bench/cache_type.py --quick    # 600-token prompt, 1 rep

For each model and cache type, in one process, the types taking turns within each repetition (so a
slower minute of the machine hits them alike), with the loader's own settings (flash attention on,
weights not repacked, 2 threads):

- **prompt**: a ``--prompt``-token text (the README) read in chunks of 256 tokens, as the slots read
  prompts: tokens/s.
- **decode**: then 64 greedy tokens, one decode each, at that context: tokens/s.
- **exact**: after the prompt, the largest difference between a token's logits decoded alone and the
  same token's row in a decode of 3 tokens of its sequence. 0 means every decode takes the same path:
  a request's text then does not depend on its neighbours, prompt lookup or a draft model. With fp16
  llama.cpp's CPU flash attention reads a lone one-token decode in chunks of the cache (one per
  thread) once it holds 512 cells, and sums them in another order.
- **KV bytes per token**: the size of the sequence's saved state divided by its tokens.

Ratios are against fp16 in the same run. No target: the choice is the user's (fp16 by default).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from common import GEMMA, MODELS_DIR, PROJECT_DIR, SMOLLM, median, print_table, write_results

TYPES = ("fp16", "bf16", "q8_0")
DECODE_TOKENS = 64


def measure(model: Path, cache_type: str, n_prompt: int, threads: int) -> dict[str, Any]:
    import llama_cpp
    import numpy as np
    from llama_cpp import Llama

    from webui.loaders.llamacpp import CACHE_TYPES, _model_params

    kind = CACHE_TYPES[cache_type]
    with _model_params(use_extra_bufts=False):
        llm = Llama(
            str(model),
            n_ctx=n_prompt + DECODE_TOKENS + 16,
            n_batch=256,
            n_threads=threads,
            n_threads_batch=threads,
            flash_attn=True,
            type_k=kind,
            type_v=kind,
            verbose=False,
        )
    ctx, n_vocab = llm._ctx.ctx, llm.n_vocab()
    text = (PROJECT_DIR / "README.md").read_text() * 4
    ids = llm.tokenize(text.encode(), add_bos=True)[: n_prompt + 3]
    batch = llama_cpp.llama_batch_init(256, 0, 1)
    memory = llama_cpp.llama_get_memory(ctx)

    def decode(tokens: list[int], pos: int, all_logits: bool = False) -> np.ndarray:
        batch.n_tokens = len(tokens)
        for j, token in enumerate(tokens):
            batch.token[j], batch.pos[j], batch.n_seq_id[j] = token, pos + j, 1
            batch.seq_id[j][0] = 0
            batch.logits[j] = all_logits or j == len(tokens) - 1
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        rows = len(tokens) if all_logits else 1
        first = llama_cpp.llama_get_logits_ith(ctx, 0 if all_logits else -1)
        return np.ctypeslib.as_array(first, shape=(rows, n_vocab)).copy()

    try:
        start = time.perf_counter()
        for s in range(0, n_prompt, 256):
            decode(ids[s : min(n_prompt, s + 256)], s)
        prompt_s = time.perf_counter() - start
        state = llama_cpp.llama_state_seq_get_size(ctx, 0)
        alone = decode([ids[n_prompt]], n_prompt)[0]
        llama_cpp.llama_memory_seq_rm(memory, 0, n_prompt, -1)
        wide = decode(ids[n_prompt : n_prompt + 3], n_prompt, all_logits=True)[0]
        llama_cpp.llama_memory_seq_rm(memory, 0, n_prompt, -1)
        token, start = ids[n_prompt], time.perf_counter()
        for i in range(DECODE_TOKENS):
            token = int(decode([token], n_prompt + i)[0].argmax())
        decode_s = time.perf_counter() - start
    finally:
        llama_cpp.llama_batch_free(batch)
        llm.close()
    return {
        "prompt tok/s": n_prompt / prompt_s,
        "decode tok/s": DECODE_TOKENS / decode_s,
        "one vs several max diff": float(np.abs(alone - wide).max()),
        "KV bytes/token": state / n_prompt,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt", type=int, default=2048, help="Prompt tokens (default 2048).")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="600-token prompt, 1 rep.")
    p.add_argument("--out", type=Path, default=None, help="Results folder (default bench/results).")
    args = p.parse_args(argv)
    if args.quick:
        args.prompt, args.reps = 600, 1
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for name in (SMOLLM, GEMMA):
        runs: dict[str, list[dict[str, Any]]] = {t: [] for t in TYPES}
        for rep in range(args.reps):
            for kind in TYPES if rep % 2 == 0 else tuple(reversed(TYPES)):
                runs[kind].append(measure(MODELS_DIR / name, kind, args.prompt, args.threads))
        for kind in TYPES:
            rs = runs[kind]
            rows.append(
                {
                    "model": name,
                    "cache type": kind,
                    **{key: median(r[key] for r in rs) for key in ("prompt tok/s", "decode tok/s", "KV bytes/token")},
                    "one vs several max diff": max(r["one vs several max diff"] for r in rs),
                }
            )
        base = rows[-len(TYPES)]
        for row in rows[-len(TYPES) :]:
            summary.append(
                {
                    "model": name,
                    "cache type": row["cache type"],
                    "prompt vs fp16": row["prompt tok/s"] / base["prompt tok/s"],
                    "decode vs fp16": row["decode tok/s"] / base["decode tok/s"],
                    "KV memory vs fp16": row["KV bytes/token"] / base["KV bytes/token"],
                    "exact": row["one vs several max diff"] == 0.0,
                }
            )
    print_table(rows, list(rows[0]), f"KV cache types, {args.prompt}-token prompt, median of {args.reps}")
    print_table(summary, list(summary[0]), "Against fp16 in the same run")
    write_results(
        "cache_type",
        {"settings": vars(args) | {"out": str(args.out)}, "rows": rows, "summary": summary},
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
