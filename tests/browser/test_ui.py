"""The UI as a person uses it: load a model in the Model tab, write in the Notebook tab."""

from __future__ import annotations

import random
import re

import pytest
from playwright.sync_api import expect

from browserkit import choose, load_smollm, open_notebook, open_parameters, reload, set_number, wait_text
from harness import wait_until
from testdata import SMOLLM

pytestmark = pytest.mark.browser


def test_load_model_then_generate_in_notebook(page, server):
    assert "No model loaded" in page.locator("#model-status").inner_text()
    load_smollm(page)
    status = page.locator("#model-status").inner_text()
    assert SMOLLM in status and "llama.cpp" in status and "context 2048" in status
    assert server.health()["model"] == SMOLLM

    open_parameters(page)
    set_number(page, "param-max_tokens", "20")
    page.locator("#param-do_sample input[type=checkbox]").uncheck()
    open_notebook(page)
    prompt = "The capital of France is"
    text = page.locator("#notebook-text textarea")
    text.fill(prompt)
    page.locator("#notebook-generate").click()
    wait_text(page, "#notebook-stats", "tokens/s")
    result = text.input_value()
    assert result.startswith(prompt) and len(result) > len(prompt) + 3
    assert "Paris" in result  # greedy SmolLM2 knows this one
    stats = page.locator("#notebook-stats").inner_text()
    assert "first token" in stats and "seed" in stats
    # The count is filled in by a follow-up event after the generation ends: wait for it, do not read at once.
    expect(page.locator("#notebook-tokens")).to_have_text(re.compile(r"Tokens: \d+ / 2048 context"), timeout=30_000)

    page.locator("#notebook-undo").click()
    page.wait_for_function("(p) => document.querySelector('#notebook-text textarea').value === p", arg=prompt)


def test_stop_keeps_partial_text_and_the_app_keeps_working(page, server):
    if server.health()["model"] != SMOLLM:
        load_smollm(page)
    open_parameters(page)
    set_number(page, "param-max_tokens", "1500")
    # The model may not end its reply, so it is surely still generating when Stop is pressed. Greedy decoding
    # alone was not enough: on another CPU the same prompt can reach an end-of-text early (a CI run timed out
    # waiting for "stopped" that way), and then Stop has nothing to stop.
    page.locator("#param-ban_eos_token input[type=checkbox]").check()
    page.locator("#param-do_sample input[type=checkbox]").uncheck()
    open_notebook(page)
    text = page.locator("#notebook-text textarea")
    prompt = "Write a very long story about a dragon who learns to cook.\n"
    text.fill(prompt)
    page.locator("#notebook-generate").click()
    page.wait_for_function(
        "(n) => document.querySelector('#notebook-text textarea').value.length > n + 40", arg=len(prompt)
    )
    # The model writes into the box: it is locked meanwhile (a word typed there was erased by the next frame).
    expect(text).not_to_be_editable()
    page.locator("#notebook-stop").click()
    assert_stopped(page)
    partial = text.input_value()
    assert partial.startswith(prompt) and len(partial) > len(prompt)
    expect(text).to_be_editable()  # and open again once it stops

    # Escape stops too (keyboard-first), and a new generation after a stop works.
    page.locator("#notebook-generate").click()
    wait_text(page, "#notebook-stats", "Generating")
    page.wait_for_function(
        "(n) => document.querySelector('#notebook-text textarea').value.length > n + 20", arg=len(partial)
    )
    page.keyboard.press("Escape")
    assert_stopped(page)
    assert server.health()["model"] == SMOLLM


def assert_stopped(page) -> None:
    """The Notebook's generation has ended, and by the Stop: the stats line says why it ended otherwise."""
    page.wait_for_function(
        "() => { const s = document.querySelector('#notebook-stats').innerText;"
        " return s && !s.includes('Generating') && !s.includes('Waiting'); }",
        timeout=60_000,
    )
    stats = page.locator("#notebook-stats").inner_text()
    assert "stopped" in stats, f"the generation ended, but not by the Stop: {stats!r}"


def test_broken_model_file_shows_a_clear_error_and_keeps_the_loaded_model(page, server):
    if server.health()["model"] != SMOLLM:
        load_smollm(page)
    (server.model_dir / "broken.gguf").write_bytes(random.Random(1).randbytes(4096))
    page.locator("#model-refresh").click()
    choose(page, "model-dropdown", "broken.gguf")
    page.locator("#model-load").click()
    toast = page.locator(".toast-body").first
    toast.wait_for()
    assert "not a GGUF model file" in toast.inner_text()
    assert server.health()["model"] == SMOLLM
    assert SMOLLM in page.locator("#model-status").inner_text()


def test_notebook_text_survives_a_reload(page, server):
    open_notebook(page)
    text = page.locator("#notebook-text textarea")
    text.fill("Notes that must never be lost: ÄÖÜ 你好")
    text.press_sequentially("!")  # typed like a person would
    saved = server.user_dir / "logs" / "notebook.txt"
    wait_until(lambda: saved.exists() and saved.read_text().endswith("!"), "saving the notebook")
    assert saved.read_text() == "Notes that must never be lost: ÄÖÜ 你好!"
    reload(page)
    page.get_by_role("tab", name="Notebook").click()
    page.wait_for_function("() => document.querySelector('#notebook-text textarea').value.includes('你好')")
