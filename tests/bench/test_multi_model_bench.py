"""bench/multi_model.py runs end to end in its quick size (no timing is asserted)."""

from __future__ import annotations

import pytest
from test_bench_smoke import run_bench

pytestmark = pytest.mark.integration


def test_multi_model(tmp_path):
    data = run_bench("multi_model.py", tmp_path, "--quick")
    s = data["summary"]
    assert not s["errors"]
    assert s["routed_right"] and s["both_stayed_loaded"] and s["same_replies"]
    assert data["both_loaded"]["main_model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"  # gemma came for a request
    assert set(s["memory_bytes_estimate_mb"]) == {"SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"}
    assert s["rss_per_extra_model_mb"] > 0 and all(v > 0 for v in s["memory_bytes_estimate_mb"].values())
    assert s["loads_per_run_one_at_a_time"] == 3  # A, B, A, B from A loaded: a switch before each of the last 3
    assert (tmp_path / "img" / "multi_model.png").stat().st_size > 1000
