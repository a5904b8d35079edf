#!/usr/bin/env python3
"""Parallel decoding: N streaming clients against ``--parallel 1`` (FIFO) and ``--parallel N`` servers.

    .venv/bin/python bench/parallel.py                    # SmolLM2 and gemma-3-270m; servers 1, 4, 8; 1, 4, 8 clients
    .venv/bin/python bench/parallel.py --quick
    .venv/bin/python bench/parallel.py --client light     # http.client instead of openai: the server's own cost

For each model, one server per ``--parallel`` value, all up at once, and against each 1, 4 and 8 clients
at once (started together on a barrier), in rounds: each round measures the decode limit of our stack
for as many sequences (bench/batch_limit.py: S sequences in one ``llama_batch``, no server), then runs
the clients against every server in turn (the order alternating). Everything a ratio compares is
seconds apart, because these machines' speed drifts by 10-30 % over minutes (a limit measured once
per model came out at 0.6-1.2 x what the servers then met, and servers run one after the other were
minutes apart). Each client streams ``--tokens``
tokens from ``/v1/completions`` (greedy, end-of-text banned with ``ban_eos_token`` so every client
gets all its tokens; the limit's prompts, each run with its own so that no prompt is in a server's cache
already). Aggregate tokens/s = all clients' tokens / (last end - first start); TTFT per client (request to first
text). Medians over ``--reps``; a ratio to the limit is the median of each run's ratio. RSS of the server after loading and after a warm-up, per
``--parallel`` value (the memory of the extra slots).

Targets (the parallel server = the largest ``--parallel`` value, the FIFO server = ``--parallel 1``):
  4-client aggregate >= 0.9 x the batched limit for 4 sequences;
  1-client tokens/s >= 0.95 x the limit for 1 sequence.
Like against like: the clients' whole requests (prompt, HTTP, every token) are set against the
limit's end-to-end reading (its prompts read in one batch, then its steps); ``decode1/limit1`` sets
the client's tokens after the first over the time after the first (streaming.py's convention) against
the limit's steps alone. Also reported, ``agg4/decode-limit4`` and ``agg1/decode-limit1``: the whole
requests against the steps alone (the reading until 2026-12-03, which charged the server for a prompt
the limit did not read: 3-5 % of a 64-token request on gemma);
  TTFT with the parallel server <= FIFO's for every client (clients ranked by their TTFT:
  the k-th to get a first token against the k-th, since all start at the same moment), read as "no
  client measurably later": for every rank, the upper end of the 95 % confidence interval of the
  rounds' parallel/FIFO ratios (their geometric mean, Student's t on the logarithms) <= 1.05. Until
  its first token the first client runs the same code on both servers (one request in one slot,
  nothing else started yet), so its ratio is 1 up to the machine's noise (5-10 % round to round): a
  median <= 1.0 was a coin toss (1.03 in one run; 0.99 and 1.03, medians of 16-round runs of the same code).
  A first client 5 % later fails whatever the rounds; a noisy run fails until ``--reps`` narrows it;
  plus the aggregate(4) / aggregate(1) speed-up (no target: the limit's 4 / 1 is its ceiling).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from batch_limit import MODELS, limits_in_child, prompts
from common import (
    IMG_DIR,
    MODELS_DIR,
    light_stream,
    median,
    plot_lines,
    print_table,
    rss_mb,
    servers,
    start_our_server,
    timed_stream,
    write_results,
)

TARGETS = {"agg4/limit4": 0.9, "agg1/limit1": 0.95, "ttft parallel/fifo upper95": 1.05}

#: The 97.5 % quantile of Student's t by degrees of freedom (1-30); 2.0 beyond (2.02 at 40, 1.96 at infinity).
_T975 = (12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13)
_T975 += (2.12, 2.11, 2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05, 2.05, 2.04)


def ratio_upper_bound(ratios: list[float]) -> float:
    """The upper end of the 95 % confidence interval of the geometric mean of ``ratios`` (Student's t on their
    logarithms): above it, the true ratio is unlikely. One ratio alone gives no interval: infinity."""
    logs = [math.log(r) for r in ratios if r > 0 and math.isfinite(r)]
    if len(logs) < 2:
        return math.inf
    t = _T975[len(logs) - 2] if len(logs) - 1 <= len(_T975) else 2.0
    return math.exp(statistics.fmean(logs) + t * statistics.stdev(logs) / math.sqrt(len(logs)))


def run_clients(url: str, n: int, tokens: int, run: str, client: str = "openai") -> dict:
    """``n`` clients streaming at the same moment (prompts ``prompts(n, run)``): aggregate tokens/s and
    each client's TTFT."""
    texts = prompts(n, run)
    barrier = threading.Barrier(n)
    recs: list[dict] = [{} for _ in range(n)]

    def client(i: int) -> None:
        stream = light_stream if client == "light" else timed_stream
        recs[i] = stream(
            url, prompt=texts[i], max_tokens=tokens, extra_body={"ban_eos_token": True}, start_together=barrier
        )

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    wall = max(r["end"] for r in recs) - min(r["start"] for r in recs)
    counts = [r["tokens"] if r["tokens"] is not None else tokens for r in recs]
    return {
        "aggregate_tokens_per_s": sum(counts) / wall,
        # streaming.py's convention, without the prompt and the HTTP round trip: tokens after the first
        "decode_tokens_per_s": [
            (c - 1) / (r["end"] - r["first"]) if r["first"] else 0.0 for c, r in zip(counts, recs, strict=True)
        ],
        "ttft_s": sorted(r["ttft_s"] or float("inf") for r in recs),  # by rank: see the docstring
        "tokens": counts,
        "errors": [r["error"] for r in recs if r["error"]],
    }


def bench_model(model: Path, workdir: Path, parallels: list[int], clients: list[int], args) -> list[dict[str, Any]]:
    """One server per ``--parallel`` value, all up at once; for every client count, ``--reps`` rounds, each
    round the limit for as many sequences (``limits_in_child``) then every server in turn (the order
    alternating), so that a server is compared with the limit and with the other servers minutes apart at
    most seconds apart: these machines' speed drifts by 10-30 % over minutes. Medians over the rounds."""
    procs = [
        start_our_server(model, workdir, n_ctx=args.n_ctx, threads=args.threads, extra=("--parallel", str(par)))
        for par in parallels
    ]
    with servers(*procs):
        time.sleep(1)
        out: list[dict[str, Any]] = []
        for par, srv in zip(parallels, procs, strict=True):
            rss_loaded = rss_mb(srv.pid)
            run_clients(srv.url, max(clients), 4, f"warm-up-{par}", args.client)  # pages, graphs of every batch size
            out.append({"parallel": par, "rss_loaded_mb": rss_loaded, "rss_warm_mb": rss_mb(srv.pid), "clients": {}})
        clients_of: dict[int, dict[int, dict[str, Any]]] = {server["parallel"]: server["clients"] for server in out}
        for n in clients:
            limits, whole = [], []
            runs: dict[int, list[dict]] = {par: [] for par in parallels}
            for rep in range(args.reps):
                # Prompts of the round's own, so that none is in a server's cache already (a slot keeps its
                # last prompt: --parallel 4 kept all four clients' from one run to the next, FIFO one).
                tag = f"{n}-{rep}"
                both = limits_in_child(model, [n], args.tokens, args.threads, run=tag)[n]
                limits.append(both["decode"])
                whole.append(both["end_to_end"])
                order = list(zip(parallels, procs, strict=True))
                for par, srv in order if rep % 2 == 0 else reversed(order):
                    runs[par].append(run_clients(srv.url, n, args.tokens, tag, args.client))
            for server in out:
                rs = runs[server["parallel"]]
                clients_of[server["parallel"]][n] = {
                    "limit_tokens_per_s": median(limits),
                    "limit_end_to_end_tokens_per_s": median(whole),
                    # the whole requests (prompts, HTTP) against the limit's prompts plus its steps
                    "x_limit": median(r["aggregate_tokens_per_s"] / lim for r, lim in zip(rs, whole, strict=True)),
                    # the whole requests against the limit's steps alone (the reading until 2026-12-03: stricter,
                    # as the limit leaves out its prompts)
                    "x_decode_limit": median(
                        r["aggregate_tokens_per_s"] / lim for r, lim in zip(rs, limits, strict=True)
                    ),
                    "decode1_x_limit": median(
                        r["decode_tokens_per_s"][0] / lim for r, lim in zip(rs, limits, strict=True)
                    ),
                    "aggregate_tokens_per_s": median(r["aggregate_tokens_per_s"] for r in rs),
                    "decode_tokens_per_s_each": [median(r["decode_tokens_per_s"][k] for r in rs) for k in range(n)],
                    "ttft_s": [median(r["ttft_s"][k] for r in rs) for k in range(n)],
                    "ttft_runs": [r["ttft_s"] for r in rs],
                    "tokens": rs[-1]["tokens"],
                    "errors": [e for r in rs for e in r["errors"]],
                }
                c = clients_of[server["parallel"]][n]
                print(
                    f"  --parallel {server['parallel']}, {n} clients: {c['aggregate_tokens_per_s']:.1f} tokens/s "
                    f"({c['x_limit']:.2f} x limit), TTFT {min(c['ttft_s']):.3f}-{max(c['ttft_s']):.3f} s, "
                    f"errors {len(c['errors'])}",
                    flush=True,
                )
    return out


def summarise(model: str, runs: dict[int, dict]) -> dict:
    """The issue's ratios for one model: the parallel server against the limit and against FIFO.

    Against the limit: the median over the repetitions of each run's ratio to the limit measured just
    before it."""
    fifo, par = runs.get(1), runs[max(runs)]
    clients = par["clients"]
    agg = {n: c["aggregate_tokens_per_s"] for n, c in clients.items()}
    out: dict = {"model": model, "parallel": par["parallel"]}
    if 4 in agg:
        out["agg4/limit4"] = clients[4]["x_limit"]
        out["agg4/decode-limit4"] = clients[4]["x_decode_limit"]
    if 1 in agg:
        out["agg1/limit1"] = clients[1]["x_limit"]
        out["agg1/decode-limit1"] = clients[1]["x_decode_limit"]
        out["decode1/limit1"] = clients[1]["decode1_x_limit"]
    if 1 in agg and 4 in agg:
        out["agg4/agg1"] = agg[4] / agg[1]
        out["limit4/limit1"] = clients[4]["limit_tokens_per_s"] / clients[1]["limit_tokens_per_s"]
    if fifo and fifo is not par:
        # rank by rank, each round's ratio of the two servers' TTFT in the same round
        per_rank = [
            [p[k] / f[k] for p, f in zip(par["clients"][n]["ttft_runs"], fifo["clients"][n]["ttft_runs"], strict=True)]
            for n in par["clients"]
            if n > 1 and n in fifo["clients"]
            for k in range(n)
        ]
        ratios = [median(rounds) for rounds in per_rank]
        if ratios:
            out["ttft parallel/fifo max"] = max(ratios)
            out["ttft parallel/fifo median"] = median(ratios)
        # the verdict: the 95 % upper bound of the geometric mean of each rank's ratios
        bounds = [ratio_upper_bound(rounds) for rounds in per_rank]
        if bounds and all(math.isfinite(b) for b in bounds):  # one round gives no interval (--quick)
            out["ttft parallel/fifo upper95 max"] = max(bounds)
            out["ttft first client upper95"] = bounds[0]
        out["fifo agg4/agg1"] = (
            fifo["clients"][4]["aggregate_tokens_per_s"] / fifo["clients"][1]["aggregate_tokens_per_s"]
            if {1, 4} <= set(fifo["clients"])
            else None
        )
        out["rss per extra slot MB"] = (par["rss_warm_mb"] - fifo["rss_warm_mb"]) / (par["parallel"] - 1)
    met = [
        out.get("agg4/limit4", 0) >= TARGETS["agg4/limit4"],
        out.get("agg1/limit1", 0) >= TARGETS["agg1/limit1"],
        out.get("ttft parallel/fifo upper95 max", 9) <= TARGETS["ttft parallel/fifo upper95"],
        not any(c["errors"] for r in runs.values() for c in r["clients"].values()),
    ]
    out["met"] = all(met)
    return out


def main(argv: list[str] | None = None) -> int:
    from webui.loaders.llamacpp import default_threads

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="smollm,gemma", help="Comma list of smollm, gemma.")
    p.add_argument("--parallel", default="1,4,8", help="Comma list of --parallel values, one server each.")
    p.add_argument("--clients", default="1,4,8", help="Comma list of concurrent client counts.")
    p.add_argument("--tokens", type=int, default=64, help="Tokens per client (max_tokens, end-of-text banned).")
    p.add_argument("--reps", type=int, default=3, help="Repetitions of each measurement (median).")
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--threads", type=int, default=0, help="llama.cpp threads (default: physical cores).")
    p.add_argument(
        "--client",
        choices=("openai", "light"),
        default="openai",
        help="The clients: the openai package (as agent frameworks use it), or a light one on http.client "
        "(on 2 cores the clients share the CPU with the server: light measures the server's own cost).",
    )
    p.add_argument("--quick", action="store_true", help="SmolLM2, servers 1 and 4, 1 and 4 clients, 16 tokens, once.")
    p.add_argument("--out", type=Path, help="Results folder (default bench/results).")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.parallel, args.clients, args.tokens, args.reps = "smollm", "1,4", "1,4", 16, 1
    args.threads = args.threads or default_threads()
    parallels = sorted(int(x) for x in args.parallel.split(","))
    clients = sorted(int(x) for x in args.clients.split(","))
    results: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
        for key in [m.strip() for m in args.models.split(",") if m.strip()]:
            model = MODELS_DIR / MODELS[key]
            print(f"== {key}: --parallel {', '.join(map(str, parallels))} ==", flush=True)
            runs = {s["parallel"]: s for s in bench_model(model, Path(tmp), parallels, clients, args)}
            limits = {n: median(r["clients"][n]["limit_tokens_per_s"] for r in runs.values()) for n in clients}
            results.append({"model": model.name, "limits": limits, "servers": list(runs.values())})
            summaries.append(summarise(model.name, runs))
    rows = [
        {
            "model": r["model"],
            "parallel": s["parallel"],
            "clients": n,
            "tokens/s": c["aggregate_tokens_per_s"],
            "limit": c["limit_tokens_per_s"],
            "x limit": c["x_limit"],
            "TTFT median s": median(c["ttft_s"]),
            "TTFT max s": max(c["ttft_s"]),
            "RSS MB": s["rss_warm_mb"],
            "errors": len(c["errors"]),
        }
        for r in results
        for s in r["servers"]
        for n, c in s["clients"].items()
    ]
    print_table(rows, list(rows[0]), "Aggregate tokens/s and TTFT")
    print_table(
        summaries,
        [
            "model",
            "parallel",
            "agg4/limit4",
            "agg1/limit1",
            "decode1/limit1",
            "agg4/decode-limit4",
            "agg1/decode-limit1",
            "ttft parallel/fifo max",
            "ttft parallel/fifo median",
            "ttft parallel/fifo upper95 max",
            "agg4/agg1",
            "limit4/limit1",
            "fifo agg4/agg1",
            "rss per extra slot MB",
            "met",
        ],
        f"Targets: {TARGETS}",
    )
    write_results(
        "parallel" if args.client == "openai" else "parallel-light",  # the light clients' run beside the other
        {
            "settings": vars(args) | {"out": str(args.out)},
            "targets": TARGETS,
            "summary": summaries,
            "rows": rows,
            "results": results,
        },
        args.out,
    )
    if not args.no_plots and results and args.client == "openai":
        plot(results)
    return 0


def plot(results: list[dict]) -> None:
    tokens, ttft = {}, {}
    for r in results:
        name = r["model"].split(".")[0].split("-Instruct")[0]
        limits = r["limits"]
        tokens[f"{name} limit (no server)"] = (list(limits), list(limits.values()))
        for s in r["servers"]:
            label = f"{name} --parallel {s['parallel']}"
            tokens[label] = (list(s["clients"]), [c["aggregate_tokens_per_s"] for c in s["clients"].values()])
            most = s["clients"][max(s["clients"])]["ttft_s"]
            ttft[label] = (list(range(1, len(most) + 1)), most)
    plot_lines(IMG_DIR / "parallel-tokens.png", "Aggregate speed by concurrent clients", "clients", "tokens/s", tokens)
    plot_lines(
        IMG_DIR / "parallel-ttft.png",
        "Time to first token, most clients at once (ranked)",
        "k-th client to get its first token",
        "TTFT (s)",
        ttft,
    )


if __name__ == "__main__":
    raise SystemExit(main())
