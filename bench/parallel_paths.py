#!/usr/bin/env python3
"""Where the parallel server's distance to llama.cpp's batched limit goes: the engine, the HTTP server, the clients.

    .venv/bin/python bench/parallel_paths.py              # SmolLM2 and gemma-3-270m, 4 requests at once, 8 rounds
    .venv/bin/python bench/parallel_paths.py --quick

bench/parallel.py sets N streaming HTTP clients against the limit (N sequences in one ``llama_batch``,
no server). This one takes the same N requests (64 greedy tokens each, end of text banned, sent together,
prompts of the round's and the path's own) along three paths, in rounds, each round measuring the limit first
(bench/batch_limit.py, in a child process) and then the paths in turn (the order alternating):

- ``engine``: our generation service (``Generator``, ``--parallel 4``) in this process, no HTTP: the slot
  engine, its sampler chains (the API's defaults: repetition penalty, DRY), the scheduler;
- ``http light``: a ``server.py --parallel 4`` on the same model, clients on the standard library's
  ``http.client`` (``common.light_stream``): adds the HTTP server and the SSE stream;
- ``http openai``: the same server, clients on the ``openai`` package (``common.timed_stream``), as
  bench/parallel.py and agent frameworks use it: adds the clients' own parsing, on the same 2 cores.

Each path's aggregate tokens/s (all tokens over the first send to the last end) is divided by the
limit's end-to-end tokens/s (its prompts read in one batch, then its steps): the median of each round's
ratio. No target: the reading says which part of the stack to work on.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from batch_limit import MODELS, limits_in_child, prompts
from common import MODELS_DIR, median, print_table, servers, start_our_server, write_results
from parallel import run_clients

PATHS = ("engine", "http light", "http openai")


def run_engine(gen: Any, n: int, tokens: int, run: str) -> float:
    """``n`` requests submitted together to ``gen``: aggregate tokens/s."""
    from webui.params import SamplingParams

    texts = prompts(n, run)
    barrier = threading.Barrier(n)
    spans: list[tuple[float, float, int]] = [(0.0, 0.0, 0)] * n

    def client(i: int) -> None:
        params = SamplingParams(max_tokens=tokens, temperature=0, ban_eos_token=True)
        barrier.wait()
        start, count = time.perf_counter(), 0
        for chunk in gen.submit(texts[i], params):
            count += chunk.n_tokens
        spans[i] = (start, time.perf_counter(), count)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    return sum(s[2] for s in spans) / (max(s[1] for s in spans) - min(s[0] for s in spans))


def run_http(url: str, n: int, tokens: int, run: str, client: str) -> float:
    """``n`` streaming HTTP clients (bench/parallel.py's, ``client`` "light" or "openai"): aggregate tokens/s."""
    result = run_clients(url, n, tokens, run, client)
    if result["errors"]:
        raise RuntimeError(f"{len(result['errors'])} clients failed: {result['errors'][0]}")
    return result["aggregate_tokens_per_s"]


def bench_model(key: str, gen: Any, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``gen``: the one generation service of this process, for every model (a second one's thread made a
    second OpenMP team, and gemma-3 ran at 0.71 x the limit instead of 0.9: bench/results/threads.txt)."""
    model = MODELS_DIR / MODELS[key]
    models = gen.models
    gen.call(lambda: models.load(model.name))  # on the generation thread, as the app does
    server = start_our_server(model, workdir, n_ctx=args.n_ctx, threads=args.threads, extra=("--parallel", "4"))
    paths = {
        "engine": lambda tag: run_engine(gen, args.clients, args.tokens, tag),
        "http light": lambda tag: run_http(server.url, args.clients, args.tokens, tag, "light"),
        "http openai": lambda tag: run_http(server.url, args.clients, args.tokens, tag, "openai"),
    }
    ratios: dict[str, list[float]] = {p: [] for p in PATHS}
    speeds: dict[str, list[float]] = {p: [] for p in PATHS}
    limits: list[float] = []
    try:
        with servers(server):
            for path in PATHS:
                paths[path](f"warm-up-{path}")  # pages, graphs of every batch size
            for rep in range(args.reps):
                tag = f"paths-{rep}"
                limit = limits_in_child(model, [args.clients], args.tokens, args.threads, run=tag)[args.clients]
                limits.append(limit["end_to_end"])
                for path in PATHS if rep % 2 == 0 else reversed(PATHS):
                    # prompts of the path's own: the second HTTP path found the first one's in the slots'
                    # cache and ran at 1.07-1.15 x the limit
                    speed = paths[path](f"{tag}-{path}")
                    speeds[path].append(speed)
                    ratios[path].append(speed / limit["end_to_end"])
                print(
                    f"  round {rep + 1}: limit {limit['end_to_end']:.1f} tokens/s; "
                    + ", ".join(f"{p} {ratios[p][-1]:.3f}" for p in PATHS),
                    flush=True,
                )
    finally:
        gen.call(models.unload)  # every model
    return {
        "model": model.name,
        "clients": args.clients,
        "limit tokens/s": median(limits),
        **{f"{p} tokens/s": median(speeds[p]) for p in PATHS},
        **{f"{p} / limit": median(ratios[p]) for p in PATHS},
        "rounds": {p: ratios[p] for p in PATHS},
    }


def main(argv: list[str] | None = None) -> int:
    from webui.loaders.llamacpp import default_threads

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="smollm,gemma", help="Comma list of smollm, gemma.")
    p.add_argument("--clients", type=int, default=4, help="Requests at once.")
    p.add_argument("--tokens", type=int, default=64, help="Tokens per request (end of text banned).")
    p.add_argument("--reps", type=int, default=8, help="Rounds (medians).")
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--threads", type=int, default=0, help="llama.cpp threads (default: physical cores).")
    p.add_argument("--quick", action="store_true", help="SmolLM2, 16 tokens, one round.")
    p.add_argument("--out", type=Path, help="Results folder (default bench/results).")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.tokens, args.reps = "smollm", 16, 1
    args.threads = args.threads or default_threads()
    from webui.generation.scheduler import Generator
    from webui.models.manager import ModelManager
    from webui.params import LoadOptions

    gen = Generator(ModelManager(MODELS_DIR, LoadOptions(n_ctx=args.n_ctx, threads=args.threads, parallel=4)))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-paths-") as tmp:
        for key in [m.strip() for m in args.models.split(",") if m.strip()]:
            print(f"== {key}: {args.clients} requests at once ==", flush=True)
            rows.append(bench_model(key, gen, Path(tmp), args))
    print_table(rows, ["model", "limit tokens/s", *(f"{p} / limit" for p in PATHS)], "Each path against the limit")
    write_results("parallel_paths", {"settings": vars(args) | {"out": str(args.out)}, "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
