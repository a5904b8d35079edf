#!/usr/bin/env python3
"""Eight API clients streaming at once against one server with one slot (``--parallel 1``, the FIFO
queue; ``bench/parallel.py`` measures the parallel slots).

    .venv/bin/python bench/concurrency.py
    .venv/bin/python bench/concurrency.py --clients 4 --tokens 32

One client alone first (the baseline), then ``--clients`` clients started 50 ms
apart, all streaming ``--tokens`` tokens (greedy, end-of-text banned) from
``/v1/chat/completions`` with the ``openai`` client. One of them hangs up after
a few tokens. Checks: every other client finishes with all its tokens and no
error; they are served in the order they arrived (FIFO); the one that hung up
is cancelled without touching the others; aggregate tokens/s (all tokens over
the wall time) at least 0.9 x one client alone.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from common import MODELS_DIR, SMOLLM, print_table, servers, start_our_server, write_results


def stream_one(url: str, i: int, tokens: int, out: dict, hang_up_after: int | None = None) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="none", timeout=600, max_retries=0)
    rec = out[i] = {
        "client": i,
        "start": time.perf_counter(),
        "first": None,
        "end": None,
        "pieces": 0,
        "error": None,
        "hung_up": False,
    }
    try:
        stream = client.chat.completions.create(
            model="any",
            messages=[{"role": "user", "content": f"Client {i}: tell me a long story about a fox."}],
            max_tokens=tokens,
            temperature=0,
            stream=True,
            extra_body={"ban_eos_token": True},
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                rec["first"] = rec["first"] or time.perf_counter()
                rec["pieces"] += 1
                if hang_up_after and rec["pieces"] >= hang_up_after:
                    rec["hung_up"] = True
                    stream.close()
                    break
    except Exception as exc:  # recorded: the benchmark reports errors instead of dying
        rec["error"] = f"{type(exc).__name__}: {exc}"
    rec["end"] = time.perf_counter()


def recent(url: str) -> list[dict]:
    with urllib.request.urlopen(url + "/v1/internal/requests", timeout=10) as r:
        return json.load(r)["data"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--reps", type=int, default=3, help="Repetitions of the single-client baseline (median).")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-conc-") as tmp:
        srv = start_our_server(MODELS_DIR / SMOLLM, Path(tmp), n_ctx=2048, extra=("--parallel", "1"))
        with servers(srv):
            warm: dict = {}
            stream_one(srv.url, 0, 8, warm)
            singles = []
            for _ in range(args.reps):
                one: dict = {}
                stream_one(srv.url, 0, args.tokens, one)
                singles.append(args.tokens / (one[0]["end"] - one[0]["start"]))
            single = sorted(singles)[len(singles) // 2]
            n_before = len(recent(srv.url))
            results: dict = {}
            quitter = args.clients // 2
            threads = []
            for i in range(args.clients):
                t = threading.Thread(
                    target=stream_one, args=(srv.url, i, args.tokens, results, 3 if i == quitter else None)
                )
                t.start()
                threads.append(t)
                time.sleep(0.05)
            for t in threads:
                t.join(600)
            stats = recent(srv.url)[n_before:]
    finished = [r for i, r in sorted(results.items()) if i != quitter]
    wall = max(r["end"] for r in results.values()) - min(r["start"] for r in results.values())
    total_tokens = sum(args.tokens for _ in finished) + results[quitter]["pieces"]
    aggregate = total_tokens / wall
    first_order = [r["client"] for r in sorted(finished, key=lambda r: r["first"] or 1e18)]
    fifo = first_order == sorted(first_order)
    errors = [r["error"] for r in results.values() if r["error"]]
    complete = all(r["pieces"] > 0 and r["error"] is None for r in finished)
    reasons = [s["finish_reason"] for s in stats]
    summary = {
        "clients": args.clients,
        "tokens_each": args.tokens,
        "single_tokens_per_s": single,
        "aggregate_tokens_per_s": aggregate,
        "ratio": aggregate / single,
        "target": 0.9,
        "met": aggregate / single >= 0.9 and fifo and complete and not errors,
        "fifo": fifo,
        "all_finished": complete,
        "errors": errors,
        "finish_reasons": reasons,
        "cancelled": reasons.count("cancelled"),
        "length": reasons.count("length"),
    }
    rows = [
        {
            "client": r["client"],
            "pieces": r["pieces"],
            "queued s": (r["first"] or r["end"]) - r["start"],
            "total s": r["end"] - r["start"],
            "hung up": r["hung_up"],
            "error": r["error"] or "",
        }
        for _, r in sorted(results.items())
    ]
    print_table(rows, ["client", "pieces", "queued s", "total s", "hung up", "error"], "Clients")
    print_table(
        [summary],
        [
            "clients",
            "single_tokens_per_s",
            "aggregate_tokens_per_s",
            "ratio",
            "fifo",
            "all_finished",
            "cancelled",
            "length",
            "met",
        ],
        "Summary",
    )
    write_results(
        "concurrency",
        {
            "settings": {k: str(v) for k, v in vars(args).items()},
            "summary": summary,
            "clients": rows,
            "single_runs": singles,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
