"""Playwright helpers of the browser tests: open the app, pick, type, load a model, chat.

Every wait is for a condition the page shows, never for a span of time. The app marks on
``<body>`` when a group of its events has answered (``webui/ui/__init__.py``,
``mark_when_answered``): ``data-webui-ready`` once the page-load events have filled in the
saved values, ``data-webui-model-loads`` counting the loads whose follow-ups (parameters,
chat template) are on screen. A value typed before those answer would be overwritten.

(Import from here in any browser test module; ``tests/`` is on the import path.)
"""

from __future__ import annotations

import os
from typing import Any

from testdata import SMOLLM

#: Debian's Chromium, and the flags it needs here (without the networking ones it stalls on the closed network).
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def settle(page: Any) -> None:
    """Wait until the page-load events have answered (the app sets ``data-webui-ready``)."""
    page.wait_for_selector("body[data-webui-ready]", state="attached")


def choose_files(page: Any, open_chooser: Any) -> Any:
    """Run ``open_chooser`` (a click or a key press that opens a file chooser) and return the chooser.

    ``page.expect_file_chooser`` asks the browser to intercept choosers without waiting for its
    answer, so a quick click can open the chooser before the interception is on; CI once waited
    in vain three times in a row, most likely because such an un-intercepted chooser was still
    open. Here a listener is set, a round trip to the page makes sure the interception request
    has gone through (Playwright's driver sends it to the page's session before the evaluation),
    then the action runs; an action with no chooser after 15 s is tried again, up to 3 times (a
    key press lost on a loaded machine)."""
    choosers: list[Any] = []

    def opened(chooser: Any) -> None:
        choosers.append(chooser)

    page.on("filechooser", opened)
    try:
        page.evaluate("() => 0")
        for _ in range(3):
            open_chooser()
            for _ in range(150):  # waiting on the page lets Playwright deliver the event
                if choosers:
                    return choosers[0]
                page.wait_for_timeout(100)
        raise AssertionError("no file chooser opened in 3 tries")
    finally:
        page.remove_listener("filechooser", opened)


def open_app(browser: Any, url: str) -> Any:
    """A new browser page on the app, once the UI is up and its saved values are in."""
    page = browser.new_page()
    page.goto(url + "/")
    settle(page)
    return page


def reload(page: Any) -> None:
    page.reload()
    settle(page)


def choose(page: Any, dropdown_id: str, option: str) -> None:
    page.locator(f"#{dropdown_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def wait_text(page: Any, selector: str, text: str, timeout: float = 60_000) -> None:
    page.wait_for_function(
        "([sel, text]) => { const el = document.querySelector(sel); return el && el.innerText.includes(text); }",
        arg=[selector, text],
        timeout=timeout,
    )


def press_load(page: Any, status: str = "Loaded") -> None:
    """Press Load; return once the status shows ``status`` and the load's follow-ups have answered."""
    before = page.evaluate("() => +document.body.dataset.webuiModelLoads || 0")
    page.locator("#model-load").click()
    wait_text(page, "#model-status", status)
    page.wait_for_function("(n) => (+document.body.dataset.webuiModelLoads || 0) > n", arg=before)


def load_smollm(page: Any) -> None:
    choose(page, "model-dropdown", SMOLLM)
    assert page.locator("#loader-dropdown input").input_value() == "llama.cpp"
    press_load(page)


def set_number(page: Any, elem_id: str, value: str) -> None:
    """Type ``value`` into a number box (and its slider) and leave the box, so the page sends it."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(value)
    box.press("Tab")
    # a slider takes the typed number on blur; wait until it has, so a click that follows sends it
    page.wait_for_function(
        "([id, v]) => { const r = document.querySelector(`#${id} input[type=range]`);"
        " return !r || Number(r.value) === Number(v); }",
        arg=[elem_id, value],
    )
    assert float(box.input_value()) == float(value), f"#{elem_id} did not keep the value {value}"


def open_parameters(page: Any) -> None:
    page.get_by_role("tab", name="Parameters").click()
    page.locator("#param-max_tokens").wait_for()


def open_notebook(page: Any) -> None:
    page.get_by_role("tab", name="Notebook").click()
    page.locator("#notebook-text textarea").wait_for()


def open_chat(page: Any) -> None:
    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-input textarea").wait_for()


def bot_texts(page: Any) -> list[str]:
    return page.locator("#chat-box [data-testid=bot]").all_inner_texts()


def send(page: Any, text: str) -> None:
    """Send a chat message; return once the reply is complete."""
    n = len(bot_texts(page))
    box = page.locator("#chat-input textarea")
    box.fill(text)
    box.press("Enter")
    page.wait_for_function("(n) => document.querySelectorAll('#chat-box [data-testid=bot]').length > n", arg=n)
    wait_for_complete_reply(page)


def wait_for_complete_reply(page: Any) -> None:
    """The stats line under the chat box shows a reply's stats once it is complete, and the Send
    button is back from its "Generating..." state once the turn has ended.

    (A reply is bounded by its max_tokens, not by time: on a busy machine SmolLM2 has been seen to
    run at one token a second, so this waits longer than the page's default 30 s.)
    """
    page.wait_for_function(
        "() => { const s = document.querySelector('#chat-reply-stats'), b = document.querySelector('#chat-send');"
        " return s && s.innerText.includes('tokens/s') && b && !b.classList.contains('generating'); }",
        timeout=180_000,
    )


def new_greedy_chat(page: Any, server: Any, max_tokens: int) -> Any:
    """SmolLM2 loaded, greedy decoding, replies of at most ``max_tokens``, and an empty new chat open."""
    if server.health()["model"] != SMOLLM:
        load_smollm(page)
    open_parameters(page)
    set_number(page, "param-max_tokens", str(max_tokens))
    page.locator("#param-do_sample input[type=checkbox]").uncheck()
    open_chat(page)
    before = page.evaluate("() => +document.body.dataset.webuiNewChats || 0")
    page.locator("#chat-new").click()
    # the new chat's answer fills the setup and the character editor: typing there before it came was undone
    page.wait_for_function("(n) => (+document.body.dataset.webuiNewChats || 0) > n", arg=before)
    page.wait_for_function("() => document.querySelectorAll('#chat-box [data-testid=bot]').length === 0")
    return page
