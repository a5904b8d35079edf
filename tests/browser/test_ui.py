"""The UI as a person uses it: load a model in the Model tab, write in the Notebook tab."""
from __future__ import annotations

import random
import re
import time

import pytest
from playwright.sync_api import expect
from testdata import SMOLLM

pytestmark = pytest.mark.browser


def choose(page, dropdown_id: str, option: str) -> None:
    page.locator(f"#{dropdown_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def wait_text(page, selector: str, text: str, timeout: float = 60_000) -> None:
    page.wait_for_function(
        "([sel, text]) => { const el = document.querySelector(sel); return el && el.innerText.includes(text); }",
        arg=[selector, text], timeout=timeout)


def load_smollm(page) -> None:
    choose(page, "model-dropdown", SMOLLM)
    assert page.locator("#loader-dropdown input").input_value() == "llama.cpp"
    page.locator("#model-load").click()
    wait_text(page, "#model-status", "Loaded")


def set_number(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    for _ in range(3):
        box.fill(value)
        box.press("Tab")
        # a slider takes the typed number on blur; wait until it has, so a click that follows sends it
        page.wait_for_function("([id, v]) => { const r = document.querySelector(`#${id} input[type=range]`);"
                               " return !r || Number(r.value) === Number(v); }", arg=[elem_id, value])
        # the page's load events may still be filling in saved values: make sure ours stayed
        page.wait_for_timeout(300)
        if _same_number(box.input_value(), value):
            return
    raise AssertionError(f"#{elem_id} did not keep the value {value}")


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def track_requests(page) -> None:
    """Count the page's Gradio calls in flight, so ``settle`` can wait for the page-load events."""
    pending: set = set()
    started = [0]

    def on_request(r) -> None:
        if "/run/predict" in r.url or "/queue/join" in r.url:
            pending.add(r)
            started[0] += 1

    page.on("request", on_request)
    page.on("requestfinished", lambda r: pending.discard(r))
    page.on("requestfailed", lambda r: pending.discard(r))
    page._webui_pending = pending
    page._webui_started = started


def settle(page) -> None:
    """Wait until the UI is up and its page-load events have answered.

    Those fill in the saved values (parameters, chat, notebook); a value typed before
    they answer would be overwritten by them. The front end sends them a moment after
    the page shows, so "nothing in flight" counts only after the first has been sent and
    no new one has started for a while.
    """
    page.wait_for_selector("#model-status")
    pending = getattr(page, "_webui_pending", None)
    if pending is None:
        page.wait_for_timeout(1500)
        return
    started = page._webui_started
    quiet_since, last_count = None, -1
    for _ in range(600):  # at most 30 s
        if started[0] != last_count or pending:
            last_count, quiet_since = started[0], None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif started[0] > 0 and time.monotonic() - quiet_since > 0.5:
            break
        page.wait_for_timeout(50)
    page.wait_for_timeout(100)


def reload(page) -> None:
    page.reload()
    settle(page)


def open_app(browser, url: str):
    """A new browser page on the app, once the UI is up and its saved values are in."""
    page = browser.new_page()
    track_requests(page)
    page.goto(url + "/")
    settle(page)
    return page


def open_parameters(page) -> None:
    page.get_by_role("tab", name="Parameters").click()
    page.locator("#param-max_tokens").wait_for()


def open_notebook(page) -> None:
    page.get_by_role("tab", name="Notebook").click()
    page.locator("#notebook-text textarea").wait_for()


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
    expect(page.locator("#notebook-tokens")).to_have_text(re.compile(r"Tokens: \d+ / 2048 context"),
                                                         timeout=30_000)

    page.locator("#notebook-undo").click()
    page.wait_for_function("(p) => document.querySelector('#notebook-text textarea').value === p", arg=prompt)


def test_stop_keeps_partial_text_and_the_app_keeps_working(page, server):
    if server.health()["model"] != SMOLLM:
        load_smollm(page)
    open_parameters(page)
    set_number(page, "param-max_tokens", "1500")
    # Greedy: SmolLM2 runs this prompt to the full 1500 tokens without an end-of-text, so it is surely still
    # generating when Stop is pressed (sampling could end the story early, now and then).
    page.locator("#param-do_sample input[type=checkbox]").uncheck()
    open_notebook(page)
    text = page.locator("#notebook-text textarea")
    prompt = "Write a very long story about a dragon who learns to cook.\n"
    text.fill(prompt)
    page.locator("#notebook-generate").click()
    page.wait_for_function("(n) => document.querySelector('#notebook-text textarea').value.length > n + 40",
                           arg=len(prompt))
    page.locator("#notebook-stop").click()
    wait_text(page, "#notebook-stats", "stopped")
    partial = text.input_value()
    assert partial.startswith(prompt) and len(partial) > len(prompt)

    # Escape stops too (keyboard-first), and a new generation after a stop works.
    page.locator("#notebook-generate").click()
    wait_text(page, "#notebook-stats", "Generating")
    page.wait_for_function("(n) => document.querySelector('#notebook-text textarea').value.length > n + 20",
                           arg=len(partial))
    page.keyboard.press("Escape")
    wait_text(page, "#notebook-stats", "stopped")
    assert server.health()["model"] == SMOLLM


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
    deadline = 50
    while deadline and (not saved.exists() or "你好" not in saved.read_text()):
        page.wait_for_timeout(100)
        deadline -= 1
    assert saved.read_text() == "Notes that must never be lost: ÄÖÜ 你好!"
    reload(page)
    page.get_by_role("tab", name="Notebook").click()
    page.wait_for_function("() => document.querySelector('#notebook-text textarea').value.includes('你好')")
