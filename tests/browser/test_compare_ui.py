"""The Compare tab as a student uses it: two presets on SmolLM2, answers side by side, a CSV for the report, all
still there after a reload."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from browserkit import load_smollm, reload, wait_text
from testdata import SMOLLM

pytestmark = pytest.mark.browser


def pick(page, dropdown_id: str, option: str) -> None:
    """Choose in one dropdown (several compare rows list the same presets: options are scoped to the row)."""
    page.locator(f"#{dropdown_id} input").click()
    page.locator(f"#{dropdown_id}").get_by_role("option", name=option, exact=True).click()


def open_compare(page) -> None:
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-prompt textarea").wait_for()


def test_two_presets_side_by_side_with_stats_table_and_csv(page, server):
    load_smollm(page)  # the model the student had loaded: it must still be there at the end
    open_compare(page)
    page.locator("#compare-mode label", has_text="Presets").click()
    expect(page.locator("#compare-model-1")).to_be_hidden()  # one model for every preset
    pick(page, "compare-model-0", SMOLLM)
    pick(page, "compare-preset-0", "Technical")
    pick(page, "compare-preset-1", "Creative")
    page.locator("#compare-max-tokens input").fill("24")
    page.locator("#compare-system textarea").fill("Answer in one short sentence.")
    page.locator("#compare-prompt textarea").fill("What is the capital of France?")
    page.locator("#compare-run").click()

    wait_text(page, "#compare-status", "Done: 2 of 2", timeout=120_000)
    for i, preset in enumerate(("Technical", "Creative")):
        answer = page.locator(f"#compare-answer-{i}")
        assert preset in answer.inner_text()  # the run's title is the answer box's label
        assert len(answer.locator("textarea").input_value().strip()) > 3
        stats = page.locator(f"#compare-stats-{i}").inner_text()
        assert "tokens/s" in stats and "first token" in stats and "seed 42" in stats and SMOLLM in stats
    expect(page.locator("#compare-answer-2")).to_be_hidden()  # only as many columns as runs

    table = page.locator("#compare-table")
    expect(table).to_contain_text("Technical")
    expect(table).to_contain_text("Creative")
    expect(table).to_contain_text(SMOLLM)

    with page.expect_download() as info:
        page.locator("#compare-download-csv").click()
    download = info.value
    assert re.fullmatch(r"compare-.*\.csv", download.suggested_filename)
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_bytes().decode("utf-8-sig"))))
    assert [(r["preset"], r["seed"]) for r in rows] == [("Technical", "42"), ("Creative", "42")]
    assert all(r["model"] == SMOLLM and r["answer"] and int(r["completion tokens"]) > 0 for r in rows)
    assert server.health()["model"] == SMOLLM

    # A reload (or a restart) shows the same answers, stats, table and download again.
    answers = [page.locator(f"#compare-answer-{i} textarea").input_value() for i in range(2)]
    reload(page)
    open_compare(page)
    wait_text(page, "#compare-status", "The last comparison")
    assert "2 run(s)" in page.locator("#compare-status").inner_text()
    assert [page.locator(f"#compare-answer-{i} textarea").input_value() for i in range(2)] == answers
    assert "Technical" in page.locator("#compare-answer-0").inner_text()
    assert "tokens/s" in page.locator("#compare-stats-1").inner_text()
    expect(page.locator("#compare-answer-2")).to_be_hidden()
    expect(page.locator("#compare-table")).to_contain_text("Creative")
    with page.expect_download() as info:
        page.locator("#compare-download-csv").click()
    again = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_bytes().decode("utf-8-sig"))))
    assert again == rows
