#!/usr/bin/env python3
"""Several models loaded at once: the memory an extra model takes, and the time it saves when requests alternate.

    .venv/bin/python bench/multi_model.py                # SmolLM2 + gemma-3-270m, 6 alternating requests, 3 reps
    .venv/bin/python bench/multi_model.py --quick

Two servers, one after the other, both started on SmolLM2 (model A), with gemma-3-270m (model B)
in the same models folder; every request goes through the ``openai`` client and names its model:

  1. ``--models-budget-mb 4000 --load-on-demand`` (both loaded): a reply from A, then the server's
     RSS (A alone); a request naming B loads B beside A and answers; RSS again (A and B). The growth
     is what B costs on top; ``GET /v1/models`` gives each model's ``memory_bytes`` (the app's
     estimate from the file, or the RSS growth it measured while loading, the larger).
     Then ``--requests`` short greedy chat requests alternating A, B, A, B...: the router sends each
     to its model, nothing is reloaded (checked: both still loaded, with the same load times).
  2. ``--models-budget-mb 0`` (one model at a time, the default): a reply from A, RSS; then
     ``POST /v1/internal/model/load`` B and a reply from B, RSS (the growth of a switch, for
     reference); then A loaded again, and the same alternating requests, each one for the model that
     is not loaded preceded by ``POST /v1/internal/model/load`` (what a client of a one-model server
     does: switch, then ask).

Reported: the RSS figures, and the total seconds of the alternating requests in each mode (median
over ``--reps``) with their ratio one-at-a-time / both-loaded, the speed-up of keeping both loaded.
Both modes get the same prompts and, greedy, must give the same replies (checked). No target: the
ratio grows with the models' load time, and the memory is the price.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import (
    GEMMA,
    IMG_DIR,
    MODELS_DIR,
    SMOLLM,
    ServerProcess,
    median,
    plot_bars,
    print_table,
    rss_mb,
    servers,
    start_our_server,
    write_results,
)
from memory import post

#: Each starts with its own word: a prompt that shares more than the chat template's opening with one the
#: model read before reuses that cached prefix, and gemma-3's greedy reply can then differ from a fresh
#: server's (seen with "Name a fruit..." then "Name a large animal.", on one model alone too), which
#: would make the two modes do different work.
QUESTIONS = [
    "Name one colour of the sky.",
    "What is two plus three?",
    "Say hello in French.",
    "Which fruit is yellow?",
    "Tell me what bees make.",
    "Give an example of a large animal.",
    "Describe the opposite of cold in one word.",
    "List two days of the week.",
]
#: Seconds to wait before reading the RSS, so the pages a load or a reply just touched are counted.
SETTLE_S = 1.0


def client_for(srv: ServerProcess) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=srv.url + "/v1", api_key="none", timeout=600, max_retries=0)


def ask(client: Any, model: str, question: str, tokens: int) -> dict[str, Any]:
    """One greedy chat request for ``model``: seconds, the model that answered, the text; errors recorded."""
    start = time.perf_counter()
    rec: dict[str, Any] = {"asked": model, "answered": None, "text": "", "tokens": None, "error": None}
    try:
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": question}],
            max_tokens=tokens,
            temperature=0,
        )
        rec["answered"], rec["text"] = reply.model, reply.choices[0].message.content or ""
        rec["tokens"] = reply.usage.completion_tokens if reply.usage else None
    except Exception as exc:  # recorded: the benchmark reports a failed request instead of dying
        rec["error"] = f"{type(exc).__name__}: {exc}"
    rec["seconds"] = time.perf_counter() - start
    return rec


def load(srv: ServerProcess, model: str) -> float:
    """``POST /v1/internal/model/load``: the seconds it took."""
    start = time.perf_counter()
    post(srv.url + "/v1/internal/model/load", {"model_name": model})
    return time.perf_counter() - start


def loaded_models(client: Any) -> dict[str, dict[str, Any]]:
    """``GET /v1/models``'s loaded entries by name: ``memory_bytes``, ``created`` (load time), ``main``..."""
    entries = [m.model_dump() for m in client.models.list()]
    return {e["id"]: e for e in entries if e.get("loaded") and not e.get("embedding")}


def settled_rss(srv: ServerProcess) -> float:
    time.sleep(SETTLE_S)
    return rss_mb(srv.pid)


def schedule(n: int) -> list[tuple[str, str]]:
    """The alternating requests: (model, question), A first; the same in both modes."""
    return [((SMOLLM, GEMMA)[i % 2], QUESTIONS[i % len(QUESTIONS)]) for i in range(n)]


def alternate(srv: ServerProcess, client: Any, tokens: int, n: int, switch: bool) -> dict[str, Any]:
    """The alternating requests, A loaded at the start; ``switch``: load each request's model first when it
    is not the one loaded (one model at a time). Total seconds from the first request to the last reply."""
    recs, loaded = [], SMOLLM
    start = time.perf_counter()
    for model, question in schedule(n):
        load_s = 0.0
        if switch and model != loaded:
            load_s, loaded = load(srv, model), model
        recs.append(ask(client, model, question, tokens) | {"load_seconds": load_s})
    return {
        "total_seconds": time.perf_counter() - start,
        "loads": sum(1 for r in recs if r["load_seconds"]),
        "load_seconds": sum(r["load_seconds"] for r in recs),
        "requests": recs,
    }


def both_loaded(model_dir: Path, workdir: Path, args) -> dict[str, Any]:
    """Mode 1: a budget for both, B loaded by the first request naming it; RSS, estimates, alternating runs."""
    extra = ("--models-budget-mb", str(args.budget_mb), "--load-on-demand")
    srv = start_our_server(model_dir / SMOLLM, workdir, n_ctx=args.n_ctx, threads=args.threads, extra=extra)
    with servers(srv):
        client = client_for(srv)
        warm = ask(client, SMOLLM, QUESTIONS[0], args.tokens)
        rss_alone = settled_rss(srv)
        on_demand = ask(client, GEMMA, QUESTIONS[1], args.tokens)  # loads B beside A
        rss_both = settled_rss(srv)
        before = loaded_models(client)
        runs = [alternate(srv, client, args.tokens, args.requests, switch=False) for _ in range(args.reps)]
        after = loaded_models(client)
        rss_after = rss_mb(srv.pid)
    asked = Counter(q["asked"] for r in runs for q in r["requests"])
    # a model loaded again would have a new load time, or its request count started again from 0
    reloaded = [
        n
        for n in before
        if n not in after
        or after[n]["created"] != before[n]["created"]
        or after[n]["requests"] != before[n]["requests"] + asked[n]
    ]
    return {
        "budget_mb": args.budget_mb,
        "rss_a_alone_mb": rss_alone,
        "rss_a_and_b_mb": rss_both,
        "rss_growth_mb": rss_both - rss_alone,
        "rss_after_runs_mb": rss_after,
        "on_demand_first_request_s": on_demand["seconds"],
        "memory_bytes": {n: e.get("memory_bytes") for n, e in before.items()},
        "main_model": next((n for n, e in before.items() if e.get("main")), None),  # A: B came for a request
        "loaded_before_runs": list(before),
        "loaded_after_runs": list(after),
        "reloaded_during_runs": reloaded,
        "warm_up": [warm, on_demand],
        "runs": runs,
    }


def one_at_a_time(model_dir: Path, workdir: Path, args) -> dict[str, Any]:
    """Mode 2: no budget; B replaces A (the RSS of a switch), then alternating runs that switch before asking."""
    extra = ("--models-budget-mb", "0")
    srv = start_our_server(model_dir / SMOLLM, workdir, n_ctx=args.n_ctx, threads=args.threads, extra=extra)
    with servers(srv):
        client = client_for(srv)
        warm = [ask(client, SMOLLM, QUESTIONS[0], args.tokens)]
        rss_alone = settled_rss(srv)
        switch_s = load(srv, GEMMA)
        warm.append(ask(client, GEMMA, QUESTIONS[1], args.tokens))
        rss_switched = settled_rss(srv)
        memory = {n: e.get("memory_bytes") for n, e in loaded_models(client).items()}
        runs = []
        for _ in range(args.reps):
            load(srv, SMOLLM)  # every run starts as mode 1's: A loaded, A asked first
            runs.append(alternate(srv, client, args.tokens, args.requests, switch=True))
    return {
        "budget_mb": 0,
        "rss_a_alone_mb": rss_alone,
        "rss_b_alone_mb": rss_switched,
        "rss_growth_mb": rss_switched - rss_alone,
        "switch_load_s": switch_s,
        "memory_bytes": memory,
        "warm_up": warm,
        "runs": runs,
    }


def summarise(both: dict[str, Any], single: dict[str, Any]) -> dict[str, Any]:
    """The figures of the docstring, and the checks: routing, no reloads, the same replies in both modes."""
    a = median(r["total_seconds"] for r in both["runs"])
    b = median(r["total_seconds"] for r in single["runs"])
    requests = [q for mode in (both, single) for r in mode["runs"] for q in r["requests"]]
    warm = both["warm_up"] + single["warm_up"]
    texts_a = [q["text"] for q in both["runs"][0]["requests"]]
    texts_b = [q["text"] for q in single["runs"][0]["requests"]]
    return {
        "rss_a_alone_mb": both["rss_a_alone_mb"],
        "rss_a_and_b_mb": both["rss_a_and_b_mb"],
        "rss_per_extra_model_mb": both["rss_growth_mb"],
        "memory_bytes_estimate_mb": {n: v / 1e6 for n, v in both["memory_bytes"].items() if v is not None},
        "rss_growth_one_at_a_time_mb": single["rss_growth_mb"],
        "both_loaded_s": a,
        "one_at_a_time_s": b,
        "speedup": b / a,
        "loads_per_run_one_at_a_time": single["runs"][0]["loads"],
        "load_s_per_switch": median(r["load_seconds"] / max(r["loads"], 1) for r in single["runs"]),
        "routed_right": all(q["answered"] == q["asked"] for q in [*requests, *warm] if not q["error"]),
        "both_stayed_loaded": not both["reloaded_during_runs"] and len(both["loaded_after_runs"]) == 2,
        "same_replies": texts_a == texts_b,  # the same work in both modes (greedy)
        "replies_differ_at": [i for i, (x, y) in enumerate(zip(texts_a, texts_b, strict=True)) if x != y],
        "tokens_per_run": [sum(q["tokens"] or 0 for q in mode["runs"][0]["requests"]) for mode in (both, single)],
        "errors": [q["error"] for q in [*requests, *warm] if q["error"]],
    }


def main(argv: list[str] | None = None) -> int:
    from webui.loaders.llamacpp import default_threads

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=6, help="Alternating requests per run (A, B, A, B...).")
    p.add_argument("--tokens", type=int, default=16, help="max_tokens of each reply.")
    p.add_argument("--reps", type=int, default=3, help="Runs of the alternating requests in each mode (median).")
    p.add_argument("--budget-mb", type=int, default=4000, help="--models-budget-mb of the both-loaded server.")
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--threads", type=int, default=0, help="llama.cpp threads (default: physical cores).")
    p.add_argument("--quick", action="store_true", help="4 requests of 4 tokens, once.")
    p.add_argument("--out", type=Path, help="Results folder (default bench/results).")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.tokens, args.reps = 4, 4, 1
    args.threads = args.threads or default_threads()
    with tempfile.TemporaryDirectory(prefix="bench-multi-") as tmp:
        print(f"\n== both loaded: --models-budget-mb {args.budget_mb} --load-on-demand ==", flush=True)
        both = both_loaded(MODELS_DIR, Path(tmp), args)
        print("== one at a time: --models-budget-mb 0, POST /v1/internal/model/load to switch ==", flush=True)
        single = one_at_a_time(MODELS_DIR, Path(tmp), args)
    summary = summarise(both, single)
    print_table(
        [
            {"what": "RSS, SmolLM2 alone", "value": summary["rss_a_alone_mb"], "unit": "MB"},
            {"what": "RSS, SmolLM2 + gemma (budget)", "value": summary["rss_a_and_b_mb"], "unit": "MB"},
            {"what": "RSS per extra model (gemma)", "value": summary["rss_per_extra_model_mb"], "unit": "MB"},
            *(
                {"what": f"memory_bytes estimate, {n}", "value": v, "unit": "MB"}
                for n, v in summary["memory_bytes_estimate_mb"].items()
            ),
            {
                "what": "RSS growth of a switch (budget 0)",
                "value": summary["rss_growth_one_at_a_time_mb"],
                "unit": "MB",
            },
            {
                "what": f"{args.requests} alternating requests, both loaded",
                "value": summary["both_loaded_s"],
                "unit": "s",
            },
            {
                "what": f"{args.requests} alternating requests, one at a time",
                "value": summary["one_at_a_time_s"],
                "unit": "s",
            },
            {"what": "speed-up of keeping both loaded", "value": summary["speedup"], "unit": "x"},
            {"what": "load per switch (budget 0)", "value": summary["load_s_per_switch"], "unit": "s"},
        ],
        ["what", "value", "unit"],
        "Several models loaded at once",
    )
    checks = ("routed_right", "both_stayed_loaded", "same_replies")
    print("checks: " + ", ".join(f"{k} {summary[k]}" for k in checks) + f", errors {len(summary['errors'])}")
    write_results(
        "multi_model",
        {
            "settings": vars(args) | {"out": str(args.out)},
            "summary": summary,
            "both_loaded": both,
            "one_at_a_time": single,
        },
        args.out,
    )
    if not args.no_plots:
        groups = {
            f"{args.requests} requests alternating SmolLM2 / gemma": {
                f"both loaded (--models-budget-mb {args.budget_mb})": summary["both_loaded_s"],
                "one at a time (load, then ask)": summary["one_at_a_time_s"],
            }
        }
        plot_bars(IMG_DIR / "multi_model.png", "Alternating requests between two models", "total seconds", groups)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
