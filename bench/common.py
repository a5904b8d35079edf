"""Shared helpers for the benchmarks: timing, servers in subprocesses, results and plots.

Every benchmark compares against a baseline measured in the same run (ratios),
writes ``bench/results/<name>.json`` and prints a table. Plots go to
``docs/img/``. None of this is imported by the app.

The benchmarks run as scripts (``python bench/streaming.py``), so Python puts only
``bench/`` on the import path; this module, which every script imports first, adds
the project (``webui``) and ``tests/`` (the server helpers and the transformers
checkpoint the tests use too): the one place the benchmarks set up their path.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
sys.path[1:1] = [str(PROJECT_DIR), str(PROJECT_DIR / "tests")]

from server_process import ServerProcess, start_llama_cpp_server, start_webui  # noqa: E402

RESULTS_DIR = BENCH_DIR / "results"
IMG_DIR = Path(os.environ.get("BENCH_IMG_DIR") or PROJECT_DIR / "docs" / "img")
MODELS_DIR = PROJECT_DIR / "models"
SMOLLM = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA = "gemma-3-270m-q4_k_m.gguf"


def median(values: Iterable[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, Any]:
    import psutil

    return {
        "cpus": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {}
    for pkg in ("llama_cpp_python", "transformers", "torch", "gradio", "openai"):
        try:
            out[pkg] = version(pkg)
        except Exception:
            pass
    return out


def write_results(name: str, data: dict[str, Any], out_dir: Path | None = None) -> Path:
    out_dir = Path(out_dir or RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "versions": versions(),
        **data,
    }
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
    print(f"\nresults: {path}")
    return path


def print_table(rows: list[dict[str, Any]], columns: list[str], title: str = "") -> None:
    if title:
        print(f"\n{title}")
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return "" if v is None else str(v)


def start_our_server(
    model: Path,
    workdir: Path,
    n_ctx: int = 2048,
    threads: int = 0,
    loader: str | None = None,
    extra: tuple[str, ...] = (),
    user_dir: Path | None = None,
) -> ServerProcess:
    """server.py with the API, ``model`` loaded (its folder is the models folder).

    ``user_dir``: the user data folder, to restart a server on the data of an earlier one
    (default: a new one in ``workdir``).
    """
    user = user_dir or Path(tempfile.mkdtemp(prefix="user-", dir=workdir))
    args = ["--model", str(model), "--user-data-dir", str(user), "--ctx-size", str(n_ctx), "--api"]
    if threads:
        args += ["--threads", str(threads)]
    if loader:
        args += ["--loader", loader]
    return start_webui(workdir, *args, *extra)


def start_peer_server(model: Path, workdir: Path, n_ctx: int = 2048, threads: int = 0) -> ServerProcess:
    """llama-cpp-python's own OpenAI-compatible server on the same model (as many threads as ours)."""
    import psutil

    return start_llama_cpp_server(model, workdir, n_ctx=n_ctx, threads=threads or psutil.cpu_count(logical=False) or 1)


@contextmanager
def servers(*procs: ServerProcess) -> Iterator[tuple[ServerProcess, ...]]:
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


def timed_stream(
    url: str,
    *,
    prompt: str | None = None,
    messages: list[Any] | None = None,
    max_tokens: int = 64,
    extra_body: dict[str, Any] | None = None,
    start_together: threading.Barrier | None = None,
) -> dict[str, Any]:
    """One greedy streamed request through the ``openai`` client: ``/v1/chat/completions`` with
    ``messages``, else ``/v1/completions`` with ``prompt``.

    Returns perf_counter times ``start`` (before ``create()``, which already waits for the
    headers), ``first`` (first text) and ``end``, the ``text``, the server's token counts
    (``tokens``, ``prompt_tokens``: ``stream_options.include_usage``) and ``error`` (recorded,
    not raised: a benchmark reports a failed client instead of dying). ``start_together``: wait
    on this barrier first, so concurrent clients send at the same moment.
    """
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="none", timeout=600, max_retries=0)
    rec: dict[str, Any] = {"first": None, "text": "", "tokens": None, "prompt_tokens": None, "error": None}
    common: dict[str, Any] = {
        "model": "any",
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "extra_body": extra_body or {},
    }
    if start_together is not None:
        start_together.wait()
    rec["start"] = time.perf_counter()
    pieces = []
    try:
        if messages is not None:
            stream: Any = client.chat.completions.create(messages=messages, **common)
        else:
            stream = client.completions.create(prompt=prompt or "", **common)
        for chunk in stream:
            if chunk.usage:
                rec["tokens"], rec["prompt_tokens"] = chunk.usage.completion_tokens, chunk.usage.prompt_tokens
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            piece = choice.delta.content if messages is not None else choice.text
            if piece:
                rec["first"] = rec["first"] or time.perf_counter()
                pieces.append(piece)
    except Exception as exc:  # recorded: the benchmark reports errors instead of dying
        rec["error"] = f"{type(exc).__name__}: {exc}"
    rec["end"] = time.perf_counter()
    rec["text"] = "".join(pieces)
    rec["ttft_s"] = rec["first"] - rec["start"] if rec["first"] else None
    return rec


def light_stream(
    url: str,
    *,
    prompt: str,
    max_tokens: int = 64,
    extra_body: dict[str, Any] | None = None,
    start_together: threading.Barrier | None = None,
) -> dict[str, Any]:
    """``timed_stream`` for ``/v1/completions`` with the standard library's ``http.client`` instead of the
    ``openai`` client: the same request and the same record, each event's JSON read with ``json.loads`` but
    no response objects made. On a 2-core machine the clients share the CPU with the server; this one takes
    less of it (bench/parallel.py ``--client light``: what the server itself costs). On 2026-12-04 the two
    clients gave the same aggregate within 0.01 (bench/parallel_paths.py)."""
    import http.client
    import urllib.parse

    address = urllib.parse.urlparse(url)
    body = {
        "model": "any",
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **(extra_body or {}),
    }
    rec: dict[str, Any] = {"first": None, "text": "", "tokens": None, "prompt_tokens": None, "error": None}
    conn = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=600)
    if start_together is not None:
        start_together.wait()
    rec["start"] = time.perf_counter()
    pieces = []
    try:
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {response.read()[:300]!r}")
        for line in response:
            if not line.startswith(b"data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                rec["tokens"] = event["usage"]["completion_tokens"]
                rec["prompt_tokens"] = event["usage"]["prompt_tokens"]
            for choice in event.get("choices") or ():
                if choice.get("text"):
                    rec["first"] = rec["first"] or time.perf_counter()
                    pieces.append(choice["text"])
    except Exception as exc:  # recorded, as timed_stream does
        rec["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    rec["end"] = time.perf_counter()
    rec["text"] = "".join(pieces)
    rec["ttft_s"] = rec["first"] - rec["start"] if rec["first"] else None
    return rec


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 1e6


def plot_lines(
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    series: dict[str, tuple[list, list]],
    hline: tuple[float, str] | None = None,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", markersize=3, label=label)
    if hline:
        ax.axhline(hline[0], color="grey", linestyle="--", linewidth=1, label=hline[1])
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_bars(path: Path, title: str, ylabel: str, groups: dict[str, dict[str, float]]) -> Path:
    """``groups``: {group label: {bar label: value}} -> grouped bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(groups)
    bars = sorted(
        {b for g in groups.values() for b in g},
        key=lambda b: list(next(iter(groups.values()))).index(b) if b in next(iter(groups.values())) else 99,
    )
    width = 0.8 / max(len(bars), 1)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for i, b in enumerate(bars):
        xs = [j + i * width for j in range(len(labels))]
        ax.bar(xs, [groups[g].get(b, 0) for g in labels], width, label=b)
    ax.set_xticks([j + width * (len(bars) - 1) / 2 for j in range(len(labels))], labels)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
