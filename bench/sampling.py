#!/usr/bin/env python3
"""Sampling on a short list against the whole row of logits, in the slot engine, in one run.

    .venv/bin/python bench/sampling.py                  # SmolLM2 and gemma-3-270m, 1 and 4 requests
    .venv/bin/python bench/sampling.py --models smollm --reps 3

Our llama.cpp chain draws each token either from the whole row of logits (llama.cpp's
``llama_sampler_sample``: the row copied into a candidate array) or from a short list (the tokens
the penalties, DRY and the end-of-text ban can lower plus the best others; ``ShortlistChain``), which
draws the same token (tests/integration/test_sampling_shortlist.py). Which one a model gets depends on
its vocabulary size (``SHORTLIST_MIN_VOCAB``). This benchmark loads each model once in our generation
service (``Generator``, ``--parallel 4``) and sends the same requests both ways, taking turns round by
round: greedy, the default chain (temperature 0.7, top-k 40, top-p 0.9, min-p 0.05, repetition penalty,
DRY) and the Chat preset, 1 and 4 requests at once, 64 tokens each, end of text banned. Reported: tokens/s
over the whole requests (aggregate for 4), the ratio short/whole (median of each round's ratio) and the
milliseconds each token's draw took, measured around the engine's ``_sample``.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

from common import GEMMA, MODELS_DIR, SMOLLM, median, print_table, write_results

MODELS = {"smollm": SMOLLM, "gemma": GEMMA}
SETTINGS: dict[str, dict[str, Any]] = {
    "greedy": {"do_sample": False},
    "default chain": {"seed": 1},
    "Chat preset": {"seed": 1, "temperature": 0.6, "top_p": 0.9, "top_k": 40},
}
#: A vocabulary size no model reaches: every chain samples the whole row.
NEVER = 1 << 40


def run_requests(gen: Any, n: int, tokens: int, params: dict[str, Any], tag: str) -> float:
    """``n`` requests sent together; aggregate tokens/s from the first send to the last token."""
    from webui.params import SamplingParams

    counts = [0] * n
    ends = [0.0] * n
    barrier = threading.Barrier(n)
    started: list[float] = []

    def client(i: int) -> None:
        sampling = SamplingParams(**{"max_tokens": tokens, "ban_eos_token": True, **params})
        barrier.wait()
        started.append(time.perf_counter())
        for chunk in gen.submit(
            f"Run {tag}. Story {i + 1}: a fox at the edge of a forest. Once upon a time,", sampling
        ):
            counts[i] += chunk.n_tokens
        ends[i] = time.perf_counter()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (max(ends) - min(started))


def bench_model(gen: Any, path: Path, clients: list[int], tokens: int, reps: int) -> list[dict[str, Any]]:
    """The rows of one model, loaded by ``gen`` (one generation service for all models: its one thread loads
    and runs each, see bench/results/threads.txt; a second service's thread ran gemma-3 at 25 tokens/s
    instead of 40)."""
    import webui.loaders.llama_sampling as sampling
    from webui.loaders import llama_slots

    draws: list[float] = []
    original = llama_slots.SlotEngine._sample

    def timed_sample(self: Any, run: Any, row: int) -> int:
        began = time.perf_counter()
        token = original(self, run, row)
        draws.append(time.perf_counter() - began)
        return token

    llama_slots.SlotEngine._sample = timed_sample  # type: ignore[method-assign]
    shortlist_from = sampling.SHORTLIST_MIN_VOCAB
    models = gen.models
    gen.call(lambda: models.load(path.name))  # loaded on the generation thread, as the app does
    rows = []
    try:
        run_requests(gen, max(clients), 4, SETTINGS["greedy"], "warm-up")
        for setting, params in SETTINGS.items():
            for n in clients:
                speed: dict[str, list[float]] = {"short": [], "whole": []}
                ms: dict[str, list[float]] = {"short": [], "whole": []}
                for rep in range(reps):
                    order = ["short", "whole"] if rep % 2 == 0 else ["whole", "short"]
                    for way in order:
                        sampling.SHORTLIST_MIN_VOCAB = shortlist_from if way == "short" else NEVER
                        draws.clear()
                        speed[way].append(run_requests(gen, n, tokens, params, f"{setting}-{n}-{rep}-{way}"))
                        ms[way].append(1000 * median(draws))
                sampling.SHORTLIST_MIN_VOCAB = shortlist_from
                row = {
                    "model": path.name,
                    "setting": setting,
                    "requests": n,
                    "short tokens/s": median(speed["short"]),
                    "whole tokens/s": median(speed["whole"]),
                    "short/whole": median(s / w for s, w in zip(speed["short"], speed["whole"], strict=True)),
                    "draw ms short": median(ms["short"]),
                    "draw ms whole": median(ms["whole"]),
                }
                print(
                    f"  {path.name} {setting}, {n} requests: short/whole {row['short/whole']:.3f} "
                    f"(draw {row['draw ms short']:.2f} against {row['draw ms whole']:.2f} ms)",
                    flush=True,
                )
                rows.append(row)
    finally:
        sampling.SHORTLIST_MIN_VOCAB = shortlist_from
        llama_slots.SlotEngine._sample = original  # type: ignore[method-assign]
        gen.call(models.unload)
    return rows


def main(argv: list[str] | None = None) -> int:
    from webui.generation.scheduler import Generator
    from webui.loaders.llama_sampling import SHORTLIST_MIN_VOCAB
    from webui.loaders.llamacpp import default_threads
    from webui.models.manager import ModelManager
    from webui.params import LoadOptions

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="smollm,gemma", help="Comma list of smollm, gemma.")
    p.add_argument("--clients", default="1,4", help="Comma list of how many requests are sent together.")
    p.add_argument("--tokens", type=int, default=64, help="Tokens per request (end of text banned).")
    p.add_argument("--reps", type=int, default=5, help="Rounds, each both ways (median).")
    p.add_argument("--threads", type=int, default=0, help="llama.cpp threads (default: physical cores).")
    p.add_argument("--quick", action="store_true", help="SmolLM2, 1 and 4 requests, 8 tokens, 1 round.")
    p.add_argument("--out", type=Path, help="Results folder (default bench/results).")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.tokens, args.reps = "smollm", 8, 1
    threads = args.threads or default_threads()
    clients = [int(c) for c in args.clients.split(",")]
    gen = Generator(ModelManager(MODELS_DIR, LoadOptions(n_ctx=2048, threads=threads, parallel=4)))
    rows = []
    for name in args.models.split(","):
        rows += bench_model(gen, MODELS_DIR / MODELS[name], clients, args.tokens, args.reps)
    print_table(
        rows,
        [
            "model",
            "setting",
            "requests",
            "short tokens/s",
            "whole tokens/s",
            "short/whole",
            "draw ms short",
            "draw ms whole",
        ],
        "Short list against whole row (same process, taking turns)",
    )
    write_results(
        "sampling",
        {"settings": vars(args) | {"threads": threads, "shortlist_min_vocab": SHORTLIST_MIN_VOCAB}, "rows": rows},
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
