#!/usr/bin/env python3
"""Memory: what the web UI costs on top of the model, and whether loads leak.

    .venv/bin/python bench/memory.py
    .venv/bin/python bench/memory.py --switches 4

1. Overhead: RSS of server.py (UI + API, SmolLM2 loaded, one reply generated)
   minus RSS of a bare Python process holding the same ``Llama`` with the same
   options after one completion. Target: under 400 MB.
2. Leaks: ``--switches`` loads alternating SmolLM2 and gemma-3-270m through
   ``/v1/internal/model/load``, RSS after each; growth from the second to the
   last load of the same model under 50 MB.
3. Unload returns memory: RSS after ``/v1/internal/model/unload``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

from common import (
    GEMMA,
    IMG_DIR,
    MODELS_DIR,
    SMOLLM,
    plot_lines,
    print_table,
    rss_mb,
    servers,
    start_our_server,
    write_results,
)

BARE = textwrap.dedent("""
    import sys, psutil
    from llama_cpp import Llama
    llm = Llama(sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=int(sys.argv[3]), n_threads_batch=int(sys.argv[3]),
                verbose=False)
    llm.create_completion("Hello, my name is", max_tokens=16, temperature=0)
    print(psutil.Process().memory_info().rss / 1e6, flush=True)
""")


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.load(r)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--switches", type=int, default=20)
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--out", type=Path)
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    from webui.loaders.llamacpp import default_threads

    threads = default_threads()
    bare = float(
        subprocess.run(
            [sys.executable, "-c", BARE, str(MODELS_DIR / SMOLLM), str(args.n_ctx), str(threads)],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        srv = start_our_server(MODELS_DIR / SMOLLM, Path(tmp), n_ctx=args.n_ctx, threads=threads)
        with servers(srv):
            post(srv.url + "/v1/completions", {"prompt": "Hello, my name is", "max_tokens": 16, "temperature": 0})
            # the UI page is built per visit: open it once, as a user would
            urllib.request.urlopen(srv.url + "/", timeout=60).read()
            time.sleep(1)
            ours = rss_mb(srv.pid)
            loads = []
            for i in range(args.switches):
                name = GEMMA if i % 2 == 0 else SMOLLM
                post(srv.url + "/v1/internal/model/load", {"model_name": name, "options": {"n_ctx": args.n_ctx}})
                post(srv.url + "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0})
                loads.append({"load": i + 1, "model": name, "rss_mb": rss_mb(srv.pid)})
                print(f"  load {i + 1:2d} {name:34} RSS {loads[-1]['rss_mb']:.0f} MB", flush=True)
            before_unload = rss_mb(srv.pid)
            post(srv.url + "/v1/internal/model/unload", {})
            time.sleep(1)
            after_unload = rss_mb(srv.pid)
    growth = {}
    for name in (SMOLLM, GEMMA):
        same = [r["rss_mb"] for r in loads if r["model"] == name]
        if len(same) >= 2:
            growth[name] = same[-1] - same[0]
    summary = {
        "bare_llama_rss_mb": bare,
        "server_rss_mb": ours,
        "overhead_mb": ours - bare,
        "overhead_target_mb": 400,
        "growth_mb": growth,
        "growth_target_mb": 50,
        "rss_before_unload_mb": before_unload,
        "rss_after_unload_mb": after_unload,
        "unload_freed_mb": before_unload - after_unload,
        "met": ours - bare < 400 and all(g < 50 for g in growth.values()),
    }
    print_table(
        [
            {"what": "bare Llama process", "MB": bare},
            {"what": "server.py (UI + API + model)", "MB": ours},
            {"what": "overhead", "MB": ours - bare},
            *({"what": f"growth over {args.switches} loads: {k}", "MB": v} for k, v in growth.items()),
            {"what": "freed by unload", "MB": before_unload - after_unload},
        ],
        ["what", "MB"],
        "Memory (RSS)",
    )
    write_results(
        "memory", {"settings": {k: str(v) for k, v in vars(args).items()}, "summary": summary, "loads": loads}, args.out
    )
    if not args.no_plots and loads:
        series = {}
        for name in (SMOLLM, GEMMA):
            pts = [r for r in loads if r["model"] == name]
            series[name.split(".")[0]] = ([r["load"] for r in pts], [r["rss_mb"] for r in pts])
        plot_lines(IMG_DIR / "memory-loads.png", "Server RSS after each model load", "load number", "RSS (MB)", series)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
