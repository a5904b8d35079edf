"""bench/draft_model.py runs end to end in its quick size (no timing is asserted)."""

from __future__ import annotations

import pytest
from test_bench_smoke import run_bench

pytestmark = pytest.mark.integration


def test_draft_model(tmp_path):
    data = run_bench("draft_model.py", tmp_path, "--quick")
    summary = {row["task"]: row for row in data["summary"]}
    assert set(summary) == {"chat", "edit"}
    for row in summary.values():
        assert not row["errors"]
        # recorded, not required: llama.cpp computes a lone token of F16 weights otherwise than several, so an
        # F16 main model's text may move with the drafts (tests/integration/test_draft_model.py proves the
        # text stays the model's with a Q8_0 main model)
        assert isinstance(row["same_text"], bool)
        assert 0 < row["acceptance"] <= 1
        assert row["decodes on"] < row["decodes off"]  # each decode yields more than one token
        assert row["off tokens/s"] > 0 and row["on tokens/s"] > 0 and row["draft alone tokens/s"] > 0
    assert {row["setting"] for row in data["in_process"]} == {"off", "on", "draft alone"}
    assert all(row["drafted"] == 0 for row in data["in_process"] if row["setting"] != "on")
    assert (tmp_path / "img" / "draft-model.png").stat().st_size > 1000
