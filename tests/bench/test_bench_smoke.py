"""Each benchmark runs end to end at tiny sizes, so the commands keep working (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from testdata import PROJECT_DIR

pytestmark = pytest.mark.integration


def run_bench(script: str, tmp_path, *args: str, name: str = "") -> dict:
    """Run ``bench/script`` at the given size; its results (``name``.json, by default the script's name)."""
    out = tmp_path / "results"
    env = {**os.environ, "BENCH_IMG_DIR": str(tmp_path / "img")}
    proc = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "bench" / script), "--out", str(out), *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    name = name or script.removesuffix(".py")
    return json.loads((out / f"{name}.json").read_text())


def test_streaming(tmp_path):
    data = run_bench("streaming.py", tmp_path, "--models", "smollm", "--reps", "1", "--tokens", "8")
    paths = data["results"][0]["paths"]
    assert set(paths) == {"raw", "ours", "api", "peer"}
    assert all(p["tokens_per_s"] > 0 and p["ttft_s"] > 0 for p in paths.values())
    assert {r["ratio"] for r in data["ratios"]} == {"ours/raw", "api/raw", "api/peer"}
    assert (tmp_path / "img" / "streaming-tokens.png").stat().st_size > 1000


def test_long_chat(tmp_path):
    data = run_bench(
        "long_chat.py",
        tmp_path,
        "--loaders",
        "llama.cpp,transformers",
        "--turns",
        "3",
        "--overflow-turns",
        "12",
        "--overflow-n-ctx",
        "512",
        "--reply-tokens",
        "8",
    )
    assert [r["turn"] for r in data["runs"]["llama.cpp"]] == [1, 2, 3]
    assert [r["turn"] for r in data["runs"]["raw llama-cpp-python"]] == [1, 2, 3]  # the same prompts, raw
    assert len(data["runs"]["transformers"]) == 3
    assert any(r["dropped"] for r in data["runs"]["llama.cpp overflow"])  # truncation happened
    assert (tmp_path / "img" / "long-chat-ttft.png").is_file()


def test_concurrency(tmp_path):
    data = run_bench("concurrency.py", tmp_path, "--clients", "3", "--tokens", "8", "--reps", "1")
    s = data["summary"]
    assert s["all_finished"] and not s["errors"] and s["fifo"]
    assert s["cancelled"] == 1


def test_memory(tmp_path):
    data = run_bench("memory.py", tmp_path, "--switches", "2")
    s = data["summary"]
    assert s["bare_llama_rss_mb"] > 0 and s["server_rss_mb"] > s["bare_llama_rss_mb"]
    assert len(data["loads"]) == 2


@pytest.mark.browser
def test_ui(tmp_path):
    data = run_bench("ui.py", tmp_path, "--sizes", "4,20", "--reps", "1", "--tokens", "8")
    # the sizes with the chat box's window, then the largest with every message shown
    assert [(r["messages"], r["shown"]) for r in data["rows"]] == [(4, "window"), (20, "window"), (20, "all")]
    assert all(r["updates"] > 0 and r["tokens_per_second"] > 0 for r in data["rows"])


def test_probabilities(tmp_path):
    data = run_bench("probabilities.py", tmp_path, "--models", "smollm", "--reps", "1", "--tokens", "8")
    rows = data["results"]
    assert {r["setting"] for r in rows} and all(r["model"] for r in rows)
    assert all(r["tokens_per_s_without"] > 0 and r["tokens_per_s_with_views"] > 0 and r["ratio"] > 0 for r in rows)


def test_batch_limit(tmp_path):
    data = run_bench("batch_limit.py", tmp_path, "--quick")
    assert data["limits"]


@pytest.mark.parametrize("client", ["openai", "light"])
def test_parallel(tmp_path, client):
    out = tmp_path / "results"
    name = "parallel" if client == "openai" else "parallel-light"
    data = run_bench("parallel.py", tmp_path, "--quick", "--client", client, name=name)
    assert data["rows"] and not any(row["errors"] for row in data["rows"])
    assert {row["parallel"] for row in data["rows"]} == {1, 4}
    assert all(row["tokens/s"] > 0 and row["TTFT max s"] > 0 for row in data["rows"])
    assert (out / "parallel.json").exists() == (client == "openai")  # the light run does not replace it


def test_parallel_ttft_verdict(monkeypatch):
    """The TTFT verdict's bound: equal servers pass, a server 6 % later fails, one round gives no interval."""
    monkeypatch.syspath_prepend(str(PROJECT_DIR / "bench"))
    from parallel import TARGETS, ratio_upper_bound

    limit = TARGETS["ttft parallel/fifo upper95"]
    equal = [1.06, 0.95, 1.02, 0.97, 1.04, 0.96, 1.01, 0.99] * 2  # round-to-round noise around 1
    assert ratio_upper_bound(equal) <= limit
    assert ratio_upper_bound([r * 1.06 for r in equal]) > limit
    assert ratio_upper_bound(equal[:3]) > limit  # too few rounds: not proven equal
    assert ratio_upper_bound([1.0]) == float("inf")


def test_parallel_paths(tmp_path):
    data = run_bench("parallel_paths.py", tmp_path, "--quick")
    (row,) = data["rows"]
    assert all(row[f"{path} tokens/s"] > 0 for path in ("engine", "http light", "http openai"))


def test_prompt_lookup(tmp_path):
    data = run_bench("prompt_lookup.py", tmp_path, "--quick")
    assert {row["task"] for row in data["summary"]} == {"edit", "chat"}
    assert all(row["identical"] for row in data["summary"])  # the greedy text is the same with it


def test_warm_chat(tmp_path):
    data = run_bench("warm_chat.py", tmp_path, "--quick")
    (row,) = data["summary"]
    assert row["saved MB"] > 0  # the chat's state was written when the server went idle


def test_sampling(tmp_path):
    data = run_bench("sampling.py", tmp_path, "--quick", "--clients", "2")
    assert {row["setting"] for row in data["rows"]} == {"greedy", "default chain", "Chat preset"}
    assert all(row["short tokens/s"] > 0 and row["whole tokens/s"] > 0 for row in data["rows"])
