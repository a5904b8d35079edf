#!/usr/bin/env python3
"""The decode limit of our stack: several sequences in one ``llama_batch``, no server.

    .venv/bin/python bench/batch_limit.py                 # SmolLM2 and gemma-3-270m, 1, 4 and 8 sequences
    .venv/bin/python bench/batch_limit.py --quick

llama-cpp-python's low-level API only: the model loaded by ``Llama``, a second context with
``n_seq_max = S``, S different short prompts in S sequences (read together in one batch), then
greedy decoding: each step is one ``llama_batch`` holding one token per sequence, one
``llama_decode``, and the argmax of each sequence's logits row (numpy, end-of-text banned so
every sequence keeps going). Aggregate tokens/s = S x steps / time of those steps; the end-to-end
reading divides the same tokens by the time of reading the prompts plus those steps (what a
server's request also includes).

llama.cpp is set up as our loader sets it up (weights not repacked, flash attention; until 2026-12-03
the limit took llama-cpp-python's defaults, which measured 0-7 % slower). This is the ceiling
``--parallel N`` can reach through the server (bench/parallel.py compares
against it in its own run): nothing here but llama.cpp and one argmax per sequence. The figures
to expect on these 2-core machines (DESIGN.md): SmolLM2 ~82 tokens/s for one sequence, 4 ->
~1.5x, 8 -> ~1.7x; gemma-3-270m ~46, 4 -> ~2.1x, 8 -> ~2.3x. No target of its own: it is
the baseline of the others.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from common import GEMMA, MODELS_DIR, SMOLLM, median, print_table, write_results

MODELS = {"smollm": SMOLLM, "gemma": GEMMA}
#: The prompts of the S sequences; bench/parallel.py sends the same ones to the server.
PROMPT = "Story {i}: a long tale about a fox who lived at the edge of a quiet forest. Once upon a time,"
WARMUP_STEPS = 2  # untimed: the first decode of a new batch shape builds its graph


def prompts(n: int, run: str = "") -> list[str]:
    """The prompts of ``n`` sequences; with ``run``, each starts with it (bench/parallel.py gives every
    run its own, so that no run finds its prompts in a server's cache from the one before)."""
    return [f"Run {run}. " * bool(run) + PROMPT.format(i=i + 1) for i in range(n)]


def batched_limits(
    model: Path, n_seqs: int, tokens: int, threads: int, *, unified: bool = False, texts: Sequence[str] = ()
) -> dict[str, float]:
    """Both readings of the limit, aggregate tokens/s of ``n_seqs`` sequences decoded greedily together:
    ``decode`` (the ``tokens`` steps only) and ``end_to_end`` (the same tokens over the time of reading the
    prompts, all in one batch, plus those steps: what a client's request also waits for, so the reading to
    set a server's whole request against).

    ``texts``: the prompts (default: :func:`prompts`). ``unified`` puts all sequences in one KV
    buffer (each sequence's attention then spans the whole buffer, masked); the default gives
    each its own stream, as a slot engine would.
    """
    seconds, _, prompt_seconds = greedy_batch(model, list(texts) or prompts(n_seqs), tokens, threads, unified=unified)
    return {"decode": n_seqs * tokens / seconds, "end_to_end": n_seqs * tokens / (seconds + prompt_seconds)}


def greedy_batch(
    model: Path, texts: Sequence[str], tokens: int, threads: int, *, unified: bool = False
) -> tuple[float, list[list[int]], float]:
    """Greedy decoding of one sequence per text, all in one batch per step: (seconds of the
    ``tokens`` timed steps, each sequence's generated token ids, seconds of reading the prompts). The
    ids let a check compare the batched answers with a sequence decoded alone. The prompts are read
    twice, the first time untimed (a new context's first decode sets up its buffers), and the cache
    emptied in between."""
    import llama_cpp
    import numpy as np
    from llama_cpp import Llama, _internals
    from llama_cpp._utils import suppress_stdout_stderr

    from webui.loaders.llama_sampling import eog_tokens

    n_seqs = len(texts)
    from webui.loaders.llamacpp import _model_params

    # llama.cpp as our loader sets it up: weights not repacked, flash attention (the loader's reasons are
    # exactness; here, a limit measured with other kernels would not be our stack's)
    with _model_params(use_extra_bufts=False):
        llm = Llama(str(model), n_ctx=256, n_threads=threads, n_threads_batch=threads, flash_attn=True, verbose=False)
    ids = [llm.tokenize(t.encode(), add_bos=True, special=False) for t in texts]
    per_seq = -(-(max(map(len, ids)) + tokens + WARMUP_STEPS + 8) // 256) * 256
    n_prompt = sum(map(len, ids))
    params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
    params.n_ctx = per_seq * n_seqs
    params.n_batch = params.n_ubatch = max(512, n_prompt, n_seqs)
    params.n_seq_max = n_seqs
    params.kv_unified = unified
    with suppress_stdout_stderr(disable=False):  # llama.cpp's notes on the new context, as Llama(verbose=False)
        ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
    batch = llama_cpp.llama_batch_init(params.n_batch, 0, 1)
    n_vocab = llm.n_vocab()
    banned = np.array(eog_tokens(llm), dtype=np.intp)

    def decode(entries: list[tuple[int, int, int, bool]]) -> np.ndarray:
        """One ``llama_decode`` of (token, position, sequence, wants logits); the argmax per output row."""
        batch.n_tokens = len(entries)
        for j, (tok, pos, seq, wants) in enumerate(entries):
            batch.token[j], batch.pos[j], batch.n_seq_id[j], batch.logits[j] = tok, pos, 1, wants
            batch.seq_id[j][0] = seq
        if rc := llama_cpp.llama_decode(ctx.ctx, batch):
            raise RuntimeError(f"llama_decode returned {rc}")
        rows = sum(e[3] for e in entries)
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(ctx.ctx), shape=(rows, n_vocab))
        logits[:, banned] = -np.inf
        return logits.argmax(axis=1)

    try:
        prompt_batch = [(t, p, s, p == len(seq) - 1) for s, seq in enumerate(ids) for p, t in enumerate(seq)]
        decode(prompt_batch)
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx.ctx), True)
        began = time.perf_counter()
        nxt = decode(prompt_batch)
        prompt_seconds = time.perf_counter() - began
        pos = [len(seq) for seq in ids]
        out = [[int(t)] for t in nxt]
        start = 0.0
        for step in range(WARMUP_STEPS + tokens):
            if step == WARMUP_STEPS:
                start = time.perf_counter()
            nxt = decode([(int(nxt[s]), pos[s], s, True) for s in range(n_seqs)])
            pos = [p + 1 for p in pos]
            for s, t in enumerate(nxt):
                out[s].append(int(t))
        elapsed = time.perf_counter() - start
    finally:
        llama_cpp.llama_batch_free(batch)
        ctx.close()
        llm.close()
    return elapsed, out, prompt_seconds


def _limit_child(
    model: str, seqs: list[int], tokens: int, threads: int, reps: int, unified: bool, run: str = ""
) -> dict:
    out = {}
    for s in seqs:
        texts = prompts(s, run)
        runs = [batched_limits(Path(model), s, tokens, threads, unified=unified, texts=texts) for _ in range(reps)]
        out[s] = {key: median(r[key] for r in runs) for key in runs[0]}
    return out


def limits_in_child(
    model: Path, seqs: Sequence[int], tokens: int, threads: int, reps: int = 1, unified: bool = False, run: str = ""
) -> dict[int, dict[str, float]]:
    """``{S: {"decode": tokens/s, "end_to_end": tokens/s}}`` (``batched_limits``, medians) for the prompts
    ``prompts(S, run)``, measured in a fresh process (bench/results/threads.txt: the process that loads a
    model should be the one that runs it, and nothing else should)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_limit_child, str(model), list(seqs), tokens, threads, reps, unified, run).result()


def main(argv: list[str] | None = None) -> int:
    from webui.loaders.llamacpp import default_threads

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="smollm,gemma", help="Comma list of smollm, gemma.")
    p.add_argument("--seqs", default="1,4,8", help="Comma list of sequence counts S.")
    p.add_argument("--tokens", type=int, default=64, help="Decode steps (tokens per sequence).")
    p.add_argument("--reps", type=int, default=3, help="Repetitions per S (median).")
    p.add_argument("--threads", type=int, default=0, help="llama.cpp threads (default: physical cores).")
    p.add_argument("--unified", action="store_true", help="One KV buffer for all sequences (kv_unified).")
    p.add_argument("--quick", action="store_true", help="SmolLM2 only, S = 1 and 4, 16 steps, 1 repetition.")
    p.add_argument("--out", type=Path, help="Results folder (default bench/results).")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.seqs, args.tokens, args.reps = "smollm", "1,4", 16, 1
    threads = args.threads or default_threads()
    seqs = [int(s) for s in args.seqs.split(",")]
    rows = []
    for key in [m.strip() for m in args.models.split(",") if m.strip()]:
        print(f"\n== {key}: S = {seqs}, {args.tokens} steps, {threads} threads ==", flush=True)
        both = limits_in_child(MODELS_DIR / MODELS[key], seqs, args.tokens, threads, args.reps, args.unified)
        for s, rates in both.items():
            rate = rates["decode"]
            rows.append(
                {
                    "model": MODELS[key],
                    "sequences": s,
                    "aggregate_tokens_per_s": rate,
                    "per_sequence_tokens_per_s": rate / s,
                    "x one sequence": rate / both[seqs[0]]["decode"] if seqs[0] == 1 else None,
                    "end_to_end_tokens_per_s": rates["end_to_end"],
                }
            )
    print_table(
        rows,
        [
            "model",
            "sequences",
            "aggregate_tokens_per_s",
            "per_sequence_tokens_per_s",
            "x one sequence",
            "end_to_end_tokens_per_s",
        ],
        "Batched decode limit (llama_decode + argmax)",
    )
    write_results(
        "batch_limit", {"settings": vars(args) | {"out": str(args.out), "threads": threads}, "limits": rows}, args.out
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
