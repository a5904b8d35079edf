#!/usr/bin/env python3
"""A child process for bench/streaming.py: one model, run by one path, timed inside the process.

    python bench/engine_worker.py raw|ours MODEL_PATH N_CTX THREADS

Reads JSON lines ``{"prompt": ..., "tokens": N, "eog": [...]}`` on stdin and answers each with
``{"ttft": s, "pieces": n, "span": s}``. Each path gets its own process and loads and decodes
on one thread, so neither measures the other's llama.cpp threads (see bench/results/threads.txt).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import common  # noqa: F401 - puts the project on the import path (the one place bench/ does)


def main() -> int:
    mode, model, n_ctx, threads = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if mode == "raw":
        from llama_cpp import Llama

        llm = Llama(str(model), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)

        def run(req: dict):
            return (
                c["choices"][0]["text"]
                for c in llm.create_completion(
                    req["prompt"],
                    max_tokens=req["tokens"],
                    temperature=0.0,
                    stream=True,
                    logit_bias={int(t): float("-inf") for t in req["eog"]},
                )
            )
    else:
        from webui.generation.scheduler import Generator
        from webui.models.manager import ModelManager
        from webui.params import LoadOptions, SamplingParams

        models = ModelManager(model.parent, LoadOptions(n_ctx=n_ctx, threads=threads))
        gen = Generator(models)
        gen.call(lambda: models.load(model.name))  # as the app does: loaded on the generation thread

        def run(req: dict):
            params = SamplingParams(max_tokens=req["tokens"], temperature=0, ban_eos_token=True, seed=1)
            return (c.text for c in gen.submit(req["prompt"], params))

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        start = time.perf_counter()
        first = last = None
        n = 0
        for piece in run(req):
            if not piece:
                continue
            now = time.perf_counter()
            first = first or now
            last = now
            n += 1
        print(
            json.dumps(
                {
                    "ttft": (first - start) if first else None,
                    "pieces": n,
                    "span": (last - first) if first and last else 0.0,
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
